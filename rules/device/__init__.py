"""TA5xx: device and determinism."""
