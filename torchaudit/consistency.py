"""``torchaudit.compare`` and ``torchaudit.assert_consistent``: two live modules, in lockstep.

The case users ask about most is the in-memory trained model against the one reloaded from
disk::

    torchaudit.assert_consistent(trained, reloaded, batch)

Both models are copied; neither is run in place, and the global RNG state is restored.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import torch
import torch.nn as nn

from torchaudit.report import ComparisonResult, Config, Location, Status
from torchaudit.settings import Settings

if TYPE_CHECKING:
    from torchaudit.analyzer.load.inputs import ExampleInputs


class CompareOptions(TypedDict, total=False):
    """The keyword options of :func:`compare`, as :func:`assert_consistent` passes them on."""

    settings: Settings | None
    mode: str
    atol: float | None
    rtol: float | None
    seed: int | None
    name: str


def compare(
    reference_model: nn.Module,
    candidate_model: nn.Module,
    example_inputs: Any,
    *,
    settings: Settings | None = None,
    mode: str = "eval",
    atol: float | None = None,
    rtol: float | None = None,
    seed: int | None = None,
    name: str = "models",
) -> ComparisonResult:
    """Run both models node by node on ``example_inputs`` (a tensor, a tuple of positional
    arguments or a dict of keyword arguments) and pin the first node whose own output differs.

    Floating inputs are cast to each model's dtype and moved to its device. The result's
    ``state_diff`` lists every parameter, buffer and plain attribute that differs.
    ``settings`` (as :func:`torchaudit.scan` takes it: ``[tool.torchaudit]`` through
    ``torchaudit.settings.resolve``) supplies ``atol``, ``rtol`` and ``seed``; the keyword
    arguments, where given, win over it.
    """
    s = (settings or Settings()).replace(atol=atol, rtol=rtol, seed=seed)
    atol, rtol, seed = s.atol, s.rtol, s.seed
    from torchaudit.analyzer.compare.comparisons import result_from
    from torchaudit.analyzer.dtypes import dtype_name, more_precise, parameter_dtype
    from torchaudit.analyzer.pipeline import given_inputs
    from torchaudit.analyzer.compare.metrics import Tolerance
    from torchaudit.analyzer.compare.pair import SideSpec, run_pair
    from torchaudit.analyzer.compare.reload import state_diff
    from torchaudit.analyzer.safety import preserved_modes, preserved_rng

    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', not {mode!r}")
    inputs = given_inputs(example_inputs)
    with preserved_rng(), preserved_modes(reference_model), preserved_modes(candidate_model):
        sides = []
        configs = []
        for model in (reference_model, candidate_model):
            work = copy.deepcopy(model).train(mode == "train")
            dev, dt = _device(work), parameter_dtype(work)  # inputs are cast to each model's own dtype
            sides.append(SideSpec(work, _convert(inputs, dev, dt), mode, seed, str(dev)))
            configs.append(Config(str(dev), dtype_name(dt), mode))
        cand_dtype = parameter_dtype(candidate_model)
        tol = Tolerance.for_dtype(cand_dtype, atol, rtol)
        diffs = tuple(state_diff(sides[0].model, sides[1].model))
        run, _ = run_pair(sides[0], sides[1], tol, cand_dtype, explain=more_precise(parameter_dtype(reference_model), cand_dtype),
                          arbiter=configs[0].dtype == "float64" and configs[1].dtype != "float64")
        return result_from(name, configs[0], configs[1], tol, run, state_diff=diffs)


class InconsistentModels(AssertionError):
    """What :func:`assert_consistent` raises: the message names the first divergent node, and
    ``result`` is the whole :class:`ComparisonResult`."""

    def __init__(self, result: ComparisonResult) -> None:
        from torchaudit.reports.divergence_table import divergence_table

        table = divergence_table(result)
        super().__init__(describe(result) + (f"\n\n{table}" if table else ""))
        self.result = result


def assert_consistent(
    reference_model: nn.Module, candidate_model: nn.Module, example_inputs: Any, **options: Unpack[CompareOptions]
) -> ComparisonResult:
    """Like :func:`compare`, for pytest: raises ``AssertionError`` (:class:`InconsistentModels`)
    naming the first divergent node, its module and its source line (and the first NaN/Inf, if
    one appears), followed by a short table of that node's own (local), inherited and total error."""
    __tracebackhide__ = True  # pytest shows the test's line, not this function's
    result = compare(reference_model, candidate_model, example_inputs, **options)
    if result.status in (Status.DIVERGED, Status.ACCUMULATED):
        raise InconsistentModels(result)
    return result


def describe(result: ComparisonResult) -> str:
    parts = []
    d = result.first_divergence
    if d is not None:
        where = f" in module '{d.module}'" if d.module else ""
        line = f" at {d.location}" if d.location else ""
        why = result.could_not_run(d.node)
        parts.append(
            f"the reference could not run node '{d.node}' ({d.op}){where}{line}, so nothing was compared there: {why}"
            if why is not None else
            f"models diverge first at node '{d.node}' ({d.op}){where}{line}: local max abs {d.local.max_abs:.3g}, "
            f"max rel {d.local.max_rel:.3g}; inherited max abs {d.inherited.max_abs:.3g}"
        )
    if result.status == Status.ACCUMULATED:
        most = ", ".join(f"'{c.node}'" + (f" (entered in '{c.entered_in}')" if c.entered_in else "") for c in result.contributors)
        parts.append("outputs are outside tolerance with no single node to blame: the error accumulated"
                     + (f", most at {most}" if most else ""))
    nf = result.first_nonfinite
    if nf:
        loc = nf.get("location")
        at = f" at {Location(loc['file'], loc.get('line'))}" if loc else ""
        parts.append(f"NaN/Inf first appears at node '{nf['node']}' in the {nf['in']} only{at}")
    if result.state_diff:
        parts.append("state that differs: " + ", ".join(f"{s.name} ({s.kind})" for s in result.state_diff[:8]))
    out = result.output
    if out:
        parts.append(f"output max abs {out.get('max_abs', 0.0):.3g}, cosine {out.get('cosine', 1.0):.6f}")
    return "; ".join(parts)


def _device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _convert(inputs: ExampleInputs, device: torch.device, dtype: torch.dtype) -> ExampleInputs:
    from torchaudit.analyzer.compare.comparisons import convert_inputs

    return convert_inputs(inputs, str(device), dtype)
