"""The dynamic stage, in the order it runs:

``stage`` (run the requested comparisons, each on copies) → ``comparisons`` (the named pairs of
configurations: dtype, device, mode, ...; ``reload`` and ``diff`` build their own sides) →
``pair`` (trace both sides, pick op or module granularity) → ``lockstep`` (the engine: one
streaming pass over both graphs and the shadow) with ``sides`` (a graph bound to one model) and
``metrics`` (error statistics and tolerances).
"""
