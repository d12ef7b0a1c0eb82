"""Whether a recording is of this model, this graph and these inputs: anything else is refused.

Each check raises one :class:`RecordingError` saying what does not match (exit 2):

* **model**: the class and the structure fingerprint (module tree, parameter and buffer names
  and shapes). Other *weights* are not refused: comparing a reloaded checkpoint or last
  month's weights with a recording is a question users ask; the report says the weights
  differ, and the first node whose own error they change is pinned like any other.
* **graph**: the tracer, and the nodes matched by ``pair.align``'s rules (module, op and
  occurrence): fewer than half of the recorded nodes with a counterpart is another graph.
* **inputs**: each leaf's shape and dtype (or plain value), then a hash of all the values.
"""

from __future__ import annotations

from typing import Any, Mapping

from torchaudit.analyzer.compare.pair import REF_ONLY, align
from torchaudit.analyzer.record.bundle import RecordingError
from torchaudit.analyzer.record.side import recorded_graph
from torchaudit.analyzer.trace.graph import ModelGraph


def check_model(where: str, recorded: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    """``recorded`` and ``live`` are fingerprints (``record.fingerprint``)."""
    fix = "record this model (same class, architecture and configuration), or scan the model the recording was made of"
    if recorded["model_class"] != live["model_class"]:
        raise RecordingError(f"{where} is of another model: {recorded['model_class']} there, {live['model_class']} here", fix)
    if recorded["structure"] == live["structure"]:
        return
    theirs = {name: shape for name, shape in recorded.get("tensors", [])}
    ours = {name: shape for name, shape in live.get("tensors", [])}
    only_there = [n for n in theirs if n not in ours]
    only_here = [n for n in ours if n not in theirs]
    shaped = [n for n in theirs if n in ours and theirs[n] != ours[n]]
    if shaped:
        what = f"{shaped[0]} has shape {theirs[shaped[0]]} there, {ours[shaped[0]]} here"
    elif only_there or only_here:
        what = (f"{only_there[0]} is only there" if only_there else f"{only_here[0]} is only here") + \
               f" ({len(only_there)} tensors only there, {len(only_here)} only here)"
    else:
        what = "its module tree differs"
    raise RecordingError(f"{where} is of another {recorded['model_class']}: {what}", fix)


def check_inputs(where: str, recorded: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    """``recorded`` and ``live`` are ``record.inputs_facts``."""
    fix = "pass the inputs the recording was made with (the same --input-shape and --seed, or --inputs)"
    if recorded["leaves"] != live["leaves"]:
        raise RecordingError(f"{where} was made with other inputs: {recorded['describe']} there, {live['describe']} here", fix)
    if recorded["sha256"] != live["sha256"]:
        raise RecordingError(f"{where} was made with other inputs: the same shapes and dtypes ({live['describe']}) "
                             "but other values", fix)


def check_graph(where: str, manifest: Mapping[str, Any], live: ModelGraph | None) -> ModelGraph:
    """The recorded graph, after checking that ``live`` (the scan's own trace) is the same
    graph; a module-granularity recording is matched by module calls in the comparison."""
    rec = recorded_graph(manifest)
    if live is None or manifest.get("granularity") != "op":
        return rec
    fix = "record again with the torchaudit, torch and transformers versions of this machine, or scan the same model code"
    if rec.tracer != live.tracer:
        raise RecordingError(f"{where} is of another graph: traced by {rec.tracer} there, by {live.tracer} here", fix)
    alias = align(rec, live)
    compared = [n for n in rec if n.op != "get_attr"]
    missing = [n for n in compared if alias.get(n.name, n.name).startswith(REF_ONLY)]
    if compared and len(missing) * 2 > len(compared):
        first = missing[0]
        raise RecordingError(
            f"{where} is of another graph: {len(missing)} of its {len(compared)} nodes have no counterpart here "
            f"(first: {first.name}, {first.op_name} in '{first.module or 'the top level'}')", fix)
    return rec
