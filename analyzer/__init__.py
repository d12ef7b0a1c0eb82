"""Loading targets, inputs and checkpoints; tracing; the dynamic stage."""
