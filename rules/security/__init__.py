"""TA6xx: checkpoint security."""
