"""TA1xx: mode (train vs eval)."""
