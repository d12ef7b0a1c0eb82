"""``reload`` builds its fresh instance the way the target built the model: ``fresh_model()``,
else the constructor call the factory made (captured while it ran), never the class defaults."""

import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.conftest import FIXTURES
from tests.dynamic import models as M

MODELS = FIXTURES / "models"
ARGS = MODELS / "reload_args.py"


def _reload(target, **kw):
    report = torchaudit.scan(target, compare=["reload"], **kw)
    [result] = report.comparisons
    return report, result


def _rules(report):
    return {f.rule for f in report.findings}


@pytest.mark.parametrize("factory", ["build_model", "build_three_classes", "build_sequential", "build_from_config"])
def test_reload_rebuilds_with_the_factorys_constructor_arguments(factory):
    # Net(hidden=16, temperature=2.0) is not Net(): no false 'temperature' difference; Net(num_classes=3)
    # loads strictly into a fresh Net(num_classes=3); Sequential(*layers) and a config through a helper work
    report, reload = _reload(f"{ARGS}:{factory}")
    assert reload.status.value == "matched", reload.skipped_reason
    assert reload.state_diff == ()
    assert not _rules(report) & {"TA701", "TA903", "TA904"}


def test_submodules_passed_to_the_constructor_are_fresh_not_the_factorys():
    # the factory ran the Sequential five times: its Counter's non-persistent buffer is 5; a fresh
    # instance rebuilds Counter() (0), so reload finds that the state dict loses it
    report, reload = _reload(f"{ARGS}:build_counted")
    assert reload.status.value == "diverged"
    [diff] = reload.state_diff
    assert (diff.name, diff.kind, diff.candidate) == ("0.seen", "non_persistent_buffer", "[0.0]")
    assert "0.seen" in next(f.message for f in report.findings if f.rule == "TA701")


def test_fresh_model_still_wins_over_the_captured_arguments():
    _, reload = _reload(str(MODELS / "reload_fresh_model.py"))
    assert reload.status.value == "matched"
    assert [(d.name, d.reference, d.candidate) for d in reload.state_diff] == [("served", "False", "True")]


def test_a_factory_that_returns_a_copy_is_skipped_with_the_fix():
    report, reload = _reload(f"{ARGS}:build_copy")
    assert reload.status.value == "skipped"
    assert "build_copy did not build the model by calling Wide" in reload.skipped_reason
    assert "fresh_model()" in reload.skipped_reason
    [f] = [f for f in report.findings if f.rule == "TA903"]
    assert "could not run" in f.message and "inside torchaudit" not in f.message


def test_constructor_arguments_that_cannot_be_copied_skip_with_the_reason():
    report, reload = _reload(f"{ARGS}:build_stack")
    assert reload.status.value == "skipped"
    assert reload.skipped_reason.startswith("the arguments of Stack(<generator>) cannot be copied: TypeError")
    assert "fresh_model()" in reload.skipped_reason
    assert "could not run" in next(f.message for f in report.findings if f.rule == "TA903")


def test_a_constructor_that_raises_on_the_fresh_instance_is_the_models_failure():
    report, reload = _reload(f"{ARGS}:build_once")
    assert reload.status.value == "error"
    [f] = [f for f in report.findings if f.rule == "TA904"]
    assert "built once per process" in f.message and f.location.file.endswith("reload_args.py")
    assert "RAISES_AGAIN" in ARGS.read_text().splitlines()[f.location.line - 1]
    assert "TA903" not in _rules(report)


def test_a_state_dict_the_fresh_instance_cannot_load_is_skipped_with_the_reason():
    # a live model has no factory to capture: Net() cannot take Net(num_classes=3)'s state dict
    from tests.fixtures.models.reload_args import Net

    model = Net(num_classes=3).eval()
    report = torchaudit.scan(model, example_inputs=torch.randn(4, 6), compare=["reload"])
    [reload] = report.comparisons
    assert reload.status.value == "skipped"
    assert "Net() does not take the model's state_dict: size mismatch for head.weight" in reload.skipped_reason
    assert "pass the model as a TARGET" in reload.skipped_reason
    [f] = [f for f in report.findings if f.rule == "TA903"]
    assert f.message == f"comparison 'reload' could not run: {reload.skipped_reason}" and f.severity.value == "error"
    assert "TA904" not in _rules(report)


def test_the_factory_leaves_module_construction_as_it_was():
    init = nn.Module.__dict__["__init__"]
    torchaudit.scan(f"{ARGS}:build_model", compare=["reload"])
    assert nn.Module.__dict__["__init__"] is init
    assert M.LinearBN().bn.num_features > 0  # constructors still take their arguments


@pytest.mark.slow
def test_a_transformers_model_built_from_a_config_still_reloads():
    pytest.importorskip("transformers")
    report, reload = _reload(str(MODELS / "tiny_bert_target.py"))
    assert reload.status.value == "matched" and reload.state_diff == ()
    assert not _rules(report) & {"TA701", "TA903", "TA904"}


def test_a_model_converted_whole_after_construction_is_rebuilt_in_its_dtype():
    # Sequential(...).half(): the rebuild from the captured constructor call is float32 until it
    # is converted the same way; it was a skip ("float32 while the model is float16")
    report, reload = _reload(f"{ARGS}:build_half", example_inputs=torch.randint(0, 10, (4, 3)))
    assert reload.status.value == "matched", reload.skipped_reason
    assert reload.reference.dtype == "float16" and reload.state_diff == ()
    assert not _rules(report) & {"TA701", "TA903", "TA904"}
