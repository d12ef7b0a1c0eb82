"""What ``torchaudit lint`` knows of the rules before importing any: every code, and where the
rules that read the source alone live.

Importing every rule imports torch; lint must not. So it checks ``--select``/``--ignore``
against :data:`CODES` and imports only the modules in :data:`SOURCE_RULES`.
``tests/test_lint.py`` checks both against the registry (``engine.load_rules``): a new rule
fails that test until it is added here, with the line the test prints.
"""

from __future__ import annotations

# every registered rule code, in order
CODES = (
    "TA101", "TA102", "TA103", "TA104", "TA105", "TA106", "TA107", "TA108", "TA109",
    "TA201", "TA202", "TA203", "TA204", "TA205", "TA206", "TA207",
    "TA301", "TA302", "TA303", "TA304", "TA305", "TA306", "TA307", "TA308", "TA309", "TA310", "TA311",
    "TA401", "TA402", "TA403", "TA404", "TA405",
    "TA501", "TA502", "TA503", "TA504", "TA505", "TA506",
    "TA601", "TA602", "TA603", "TA604", "TA605",
    "TA701", "TA702", "TA703", "TA704", "TA705", "TA706", "TA707", "TA708", "TA709",
    "TA901", "TA902", "TA903", "TA904",
)

# the rules whose needs lie within engine.SOURCE_ALONE, by code: the module that registers each
SOURCE_RULES = {
    "TA101": "torchaudit.rules.mode.functional_dropout",
    "TA102": "torchaudit.rules.mode.literal_training",
    "TA103": "torchaudit.rules.mode.training_branch",
    "TA308": "torchaudit.rules.checkpoint.ignored_load_keys",
    "TA309": "torchaudit.rules.checkpoint.meta_load_without_assign",
    "TA404": "torchaudit.rules.dtype.default_dtype",
    "TA405": "torchaudit.rules.dtype.tf32",
    "TA501": "torchaudit.rules.device.factory_without_device",
    "TA502": "torchaudit.rules.device.hardcoded_device",
    "TA504": "torchaudit.rules.device.cudnn_benchmark",
    "TA506": "torchaudit.rules.device.numpy_in_forward",
    "TA602": "torchaudit.rules.security.torch_load_unsafe",
    "TA603": "torchaudit.rules.security.unsafe_fallback",
}

# the engine's own finding for a rule that raised (engine.CRASHED), documented in this module
CRASHED_MODULE = "torchaudit.rules.tool.untraceable"
