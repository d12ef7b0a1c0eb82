"""TA7xx: what the comparisons of the dynamic stage found."""
