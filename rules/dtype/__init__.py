"""TA4xx: dtype and precision."""
