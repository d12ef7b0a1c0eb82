"""The command line: a thin layer that parses options and calls the library.

Nothing here imports torch at module level, so ``--version`` and ``--help`` answer at once.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import traceback
from typing import Annotated, Optional

import typer

from torchaudit import __version__

app = typer.Typer(
    name="torchaudit",
    help="Why does my loaded (or GPU, or half-precision, or eval-mode) model give other answers?",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"torchaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """torchaudit: static and dynamic inspection of PyTorch models."""


def _command_line() -> str:
    """The exact command, quoted, so a report can say how to reproduce it."""
    return "torchaudit " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def _fail(exc: BaseException, debug: bool) -> None:
    """User errors: one line on stderr, exit 2. ``--debug`` keeps the traceback."""
    from torchaudit.errors import TorchAuditError

    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, TorchAuditError):
        typer.echo(f"torchaudit: error: {exc.one_line()}", err=True)
    else:
        typer.echo(f"torchaudit: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
    raise typer.Exit(2)


@app.command()
def scan(
    target: Annotated[str, typer.Argument(help="path/to/model.py, path/to/model.py:NAME or package.module:NAME.")],
    inputs: Annotated[Optional[str], typer.Option("--inputs", help="Example inputs from a function: path.py:fn.")] = None,
    input_shape: Annotated[
        Optional[list[str]],
        typer.Option("--input-shape", help="A random input of this shape, e.g. 1,3,224,224 or 8,128:int64 (repeatable)."),
    ] = None,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write the JSON report here ('-' = stdout).")] = None,
    html_path: Annotated[
        Optional[str], typer.Option("--html", help="Write the self-contained HTML report (for code review) here.")
    ] = None,
    markdown_path: Annotated[
        Optional[str], typer.Option("--markdown", help="Write a Markdown summary for a pull-request comment here.")
    ] = None,
    sarif_path: Annotated[
        Optional[str], typer.Option("--sarif", help="Write SARIF 2.1.0 for code-scanning dashboards here.")
    ] = None,
    fail_on: Annotated[
        Optional[str],
        typer.Option("--fail-on", help="Exit 1 when a finding is at or above: error, warning, info or never (default error)."),
    ] = None,
    # rule selection and release gates (rules/config.py, rules/baseline.py)
    select: Annotated[
        Optional[list[str]],
        typer.Option("--select", help="Run only these rule codes or prefixes, e.g. TA1,TA201 (comma-separated, repeatable)."),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option("--ignore", help="Skip these rule codes or prefixes, e.g. TA107,TA20 (comma-separated, repeatable)."),
    ] = None,
    baseline: Annotated[
        Optional[str], typer.Option("--baseline", help="Gate only on findings not in this baseline file.")
    ] = None,
    write_baseline: Annotated[
        Optional[str], typer.Option("--write-baseline", help="Write the current findings as a baseline file (then gate against it).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    compare: Annotated[
        Optional[list[str]],
        typer.Option("--compare", help="Comparison to run: auto (default), dtype, device, reload, mode, determinism, batch (repeatable)."),
    ] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Reference config device:dtype[:mode], e.g. cpu:float64:eval.")] = None,
    candidate: Annotated[Optional[str], typer.Option("--candidate", help="Candidate config device:dtype[:mode], e.g. cpu:float16.")] = None,
    static_only: Annotated[bool, typer.Option("--static-only", help="Skip the dynamic stage (no comparisons).")] = False,
    atol: Annotated[Optional[float], typer.Option("--atol", help="Absolute tolerance of the comparisons (default: assert_close's for the dtype).")] = None,
    rtol: Annotated[Optional[float], typer.Option("--rtol", help="Relative tolerance of the comparisons (default: assert_close's for the dtype).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of random ops in the comparisons.")] = 0,
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", help="Check this checkpoint against the model (.safetensors, .pt, .pth, .bin, .ckpt)."),
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option("--trust-checkpoint", help="Unpickle the checkpoint with weights_only=False (only for files you made)."),
    ] = False,
    meta: Annotated[
        bool, typer.Option("--meta", help="Build the model without weight memory (fake tensors); skip rules that need values.")
    ] = False,
) -> None:
    """Trace the model, run the rules and comparisons, and write the reports."""
    from torchaudit.errors import TorchAuditError

    command = _command_line()
    try:
        from torchaudit.api import scan as run_scan, write_json
        from torchaudit.rules.baseline import apply_baseline, write_baseline as save_baseline
        from torchaudit.rules.config import load_config, resolve

        settings = resolve(load_config(target), select, ignore, fail_on, baseline)
        # with --json -, stdout carries only the JSON: the model's own prints go to stderr
        with contextlib.redirect_stdout(sys.stderr) if json_path == "-" else contextlib.nullcontext():
            report = run_scan(
                target,
                input_shapes=input_shape,
                inputs_spec=inputs,
                select=settings.select,
                ignore=settings.ignore,
                fail_on=settings.fail_on,
                command=command,
                checkpoint=checkpoint,
                trust_checkpoint=trust_checkpoint,
                meta=meta,
                compare=compare or ("auto",),
                reference=reference,
                candidate=candidate,
                static_only=static_only,
                atol=atol,
                rtol=rtol,
                seed=seed,
                progress=True,
            )
        if write_baseline:
            save_baseline(report, write_baseline)
        gate = settings.baseline or write_baseline
        if gate:
            report = apply_baseline(report, gate)
        if json_path:
            write_json(report, json_path)
        from torchaudit.reports.files import write_reports

        write_reports(report, html=html_path, markdown=markdown_path, sarif=sarif_path)
    except TorchAuditError as exc:
        _fail(exc, debug)
        return
    except Exception as exc:  # noqa: BLE001 - a bug: say so, keep the traceback under --debug
        _fail(exc, debug)
        return
    from torchaudit.reports.terminal import print_summary

    print_summary(report, to_stderr=json_path == "-")
    raise typer.Exit(report.exit_code)


@app.command("rules")
def rules_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rules as JSON.")] = False,
) -> None:
    """List every rule: code, severity and title."""
    from torchaudit.rules.engine import catalogue

    registry = catalogue()
    if as_json:
        import json

        data = [
            {"code": r.code, "severity": r.severity.value, "title": r.title, "docs": dict(r.sections)}
            for r in registry.values()
        ]
        typer.echo(json.dumps(data, indent=2))
        return
    from torchaudit.reports.terminal import print_rules

    print_rules(registry.values())


@app.command("rule")
def rule_command(code: Annotated[str, typer.Argument(help="A rule code, e.g. TA101.")]) -> None:
    """Print one rule's docs: what it finds, why it matters, an example and the fix."""
    from torchaudit.rules.engine import catalogue

    info = catalogue().get(code.strip().upper())
    if info is None:
        typer.echo(f"torchaudit: error: unknown rule code {code!r} (fix: run 'torchaudit rules' for the list)", err=True)
        raise typer.Exit(2)
    from torchaudit.reports.terminal import print_rule_docs

    print_rule_docs(info)


@app.command()
def diff(
    target: Annotated[str, typer.Argument(help="path/to/model.py, path/to/model.py:NAME or package.module:NAME.")],
    a: Annotated[str, typer.Argument(help="The first checkpoint (the reference).")],
    b: Annotated[str, typer.Argument(help="The second checkpoint (the candidate).")],
    inputs: Annotated[Optional[str], typer.Option("--inputs", help="Example inputs from a function: path.py:fn.")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help="A random input of this shape (repeatable).")] = None,
    trust_checkpoint: Annotated[bool, typer.Option("--trust-checkpoint", help="Unpickle with weights_only=False (only for files you made).")] = False,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write the JSON report here ('-' = stdout).")] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", help="Absolute tolerance of the comparison.")] = None,
    rtol: Annotated[Optional[float], typer.Option("--rtol", help="Relative tolerance of the comparison.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of random ops in the comparison.")] = 0,
    fail_on: Annotated[str, typer.Option("--fail-on", help="Exit 1 when a finding is at or above: error, warning, info or never.")] = "error",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Two checkpoints of one model: what changed per tensor, then where the activations part."""

    command = _command_line()
    try:
        from torchaudit.api import write_json
        from torchaudit.diffing import diff as run_diff

        report = run_diff(target, a, b, input_shapes=input_shape, inputs_spec=inputs, trust_checkpoint=trust_checkpoint,
                          atol=atol, rtol=rtol, seed=seed, fail_on=fail_on, command=command)
        if json_path:
            write_json(report, json_path)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        _fail(exc, debug)
        return
    from torchaudit.reports.tensor_table import print_tensor_table
    from torchaudit.reports.terminal import print_summary

    print_tensor_table(report, to_stderr=json_path == "-")
    print_summary(report, to_stderr=json_path == "-")
    raise typer.Exit(report.exit_code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
