"""TA3xx: checkpoint against model."""
