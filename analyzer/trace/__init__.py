"""Tracing: the chain of tracers (fx, transformers' fx, torch.export, forward hooks) that turns a
model into a :class:`~torchaudit.analyzer.trace.graph.ModelGraph`."""
