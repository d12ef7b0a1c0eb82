"""TA2xx: state that state_dict() does not capture."""
