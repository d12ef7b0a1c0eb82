"""Renderers: every one reads a :class:`torchaudit.report.Report` and nothing else."""
