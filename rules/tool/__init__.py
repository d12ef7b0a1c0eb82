"""TA9xx: the tool itself."""
