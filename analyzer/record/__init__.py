"""Recordings: one run of a model on disk (safetensors shards + a JSON manifest), compared elsewhere."""
