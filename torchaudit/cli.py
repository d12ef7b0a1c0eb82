"""The command line: a thin layer that parses options and calls the library.

Nothing here imports torch at module level, so ``--version`` and ``--help`` answer at once.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

# typer (0.29) carries its own click; its exceptions are public only from here
from typer._click import exceptions as click_errors

from torchaudit import __version__

class _Group(TyperGroup):
    """Usage errors (a bad option value, an unknown option) as every other error: one
    ``torchaudit: error: ...`` line on stderr, exit 2, instead of typer's box."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone = kwargs.pop("standalone_mode", True)
        kwargs["standalone_mode"] = False
        if not standalone:
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **kwargs)
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            typer.echo(f"torchaudit: error: {exc.format_message().rstrip('.')}. Run '{_usage_command(exc)} --help' for the options.", err=True)
            sys.exit(2)
        except click_errors.ClickException as exc:
            typer.echo(f"torchaudit: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_command(exc: click_errors.UsageError) -> str:
    return exc.ctx.command_path if exc.ctx is not None else "torchaudit"


app = typer.Typer(
    cls=_Group,
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
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
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
        from torchaudit.report import printable

        typer.echo(f"torchaudit: internal error: {type(exc).__name__}: {printable(str(exc))} (run with --debug for the traceback)", err=True)
    raise typer.Exit(2)


CONFIG_HELP = "Read settings from this TOML file (a pyproject.toml's \\[tool.torchaudit], or top-level keys) instead of the nearest pyproject.toml."
ISOLATED_HELP = "Ignore every configuration file: only the command line and the defaults."
QUIET_HELP = "Terminal summary: the errors and the verdict only."
VERBOSE_HELP = "Terminal summary: every finding (infos too, not folded by rule)."
REPORT_HELP = {
    "html": "Write the self-contained HTML report (for code review) here ('-' = stdout).",
    "markdown": "Write a Markdown summary for a pull-request comment here ('-' = stdout).",
    "sarif": "Write SARIF 2.1.0 for code-scanning dashboards here ('-' = stdout).",
}


# the gate option, the same in every command that gates
FailOn = Annotated[
    Optional[str],
    typer.Option("--fail-on", rich_help_panel="Rules and gate", metavar="LEVEL",
                 help="Exit 1 when a finding is at or above: error, warning, info or never (default error; any case)."),
]


EPILOG = ("Exit codes: 0 pass; 1 the gate failed (a finding at or above --fail-on); 2 could not run (one line on stderr "
          "says why). Settings: \\[tool.torchaudit] of the nearest pyproject.toml (or --config PATH), every key like its flag; "
          "the command line wins.")
OUTPUT_FORMAT_HELP = ("What the terminal shows: text (default, grouped by severity), concise (one line per finding), "
                      "json (the JSON report on stdout) or github (GitHub Actions annotations).")


STREAM_HELP = ("Compare on weights read from the safetensors files module by module, freed after use, instead of whole "
               "copies in memory (a save_pretrained directory, an index of shards, or --checkpoint FILE.safetensors). "
               "Default: on when the weights exceed half of the available memory; the report says so.")


@app.command(epilog=EPILOG)
def scan(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="path/to/model.py, path/to/model.py:NAME or package.module:NAME.")],
    inputs: Annotated[Optional[str], typer.Option("--inputs", rich_help_panel="Inputs", metavar="PATH:FN", help="Example inputs from a function: path.py:fn.")] = None,
    input_shape: Annotated[
        Optional[list[str]],
        typer.Option("--input-shape", rich_help_panel="Inputs", metavar="SHAPE", help="A random input of this shape, e.g. 1,3,224,224 or 8,128:int64 (repeatable; sizes separated by commas)."),
    ] = None,
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", rich_help_panel="Checkpoint", metavar="PATH", help="Check this checkpoint against the model (.safetensors, .pt, .pth, .bin, .ckpt)."),
    ] = None,
    trust_checkpoint: Annotated[
        Optional[bool],
        typer.Option("--trust-checkpoint/--no-trust-checkpoint", rich_help_panel="Checkpoint", metavar="", help="Unpickle the checkpoint with weights_only=False (only for files you made)."),
    ] = None,
    meta: Annotated[
        Optional[bool], typer.Option("--meta/--no-meta", rich_help_panel="Checkpoint", metavar="", help="Build the model without weight memory (fake tensors); skip rules that need values.")
    ] = None,
    stream_weights: Annotated[
        Optional[bool], typer.Option("--stream-weights/--no-stream-weights", rich_help_panel="Checkpoint", metavar="", help=STREAM_HELP)
    ] = None,
    compare: Annotated[
        Optional[list[str]],
        typer.Option("--compare", rich_help_panel="Comparisons", metavar="NAMES", help="Comparisons to run: auto (default), dtype, device, reload, mode, determinism, batch (comma-separated, repeatable)."),
    ] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", rich_help_panel="Comparisons", metavar="CFG", help="Reference config device:dtype[:mode], e.g. cpu:float64:eval.")] = None,
    candidate: Annotated[Optional[str], typer.Option("--candidate", rich_help_panel="Comparisons", metavar="CFG", help="Candidate config device:dtype[:mode], e.g. cpu:float16.")] = None,
    against: Annotated[Optional[str], typer.Option("--against", rich_help_panel="Comparisons", metavar="RUN", help="Compare the live model with this recording (a folder written by 'torchaudit record'); --candidate sets the live config.")] = None,
    static_only: Annotated[
        Optional[bool], typer.Option("--static-only/--no-static-only", rich_help_panel="Comparisons", metavar="", help="Skip the dynamic stage (no comparisons).")
    ] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", rich_help_panel="Comparisons", metavar="FLOAT", help="Absolute tolerance of the comparisons, >= 0 (default: assert_close's for the dtype).")] = None,
    rtol: Annotated[Optional[float], typer.Option("--rtol", rich_help_panel="Comparisons", metavar="FLOAT", help="Relative tolerance of the comparisons, >= 0 (default: assert_close's for the dtype).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", rich_help_panel="Comparisons", metavar="INT", help="Seed of random ops in the comparisons (default 0).")] = None,
    select: Annotated[
        Optional[list[str]],
        typer.Option("--select", rich_help_panel="Rules and gate", metavar="CODES", help="Run only these rule codes or prefixes, e.g. TA1,TA201 (comma-separated, repeatable; one that matches no rule is an error)."),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option("--ignore", rich_help_panel="Rules and gate", metavar="CODES", help="Skip these rule codes or prefixes, e.g. TA107,TA20 (comma-separated, repeatable)."),
    ] = None,
    fail_on: FailOn = None,
    baseline: Annotated[
        Optional[str], typer.Option("--baseline", rich_help_panel="Rules and gate", metavar="PATH", help="Gate only on findings not in this baseline file.")
    ] = None,
    write_baseline: Annotated[
        Optional[str], typer.Option("--write-baseline", rich_help_panel="Rules and gate", metavar="PATH", help="Write the current findings as a baseline file (then gate against it).")
    ] = None,
    json_path: Annotated[Optional[str], typer.Option("--json", rich_help_panel="Reports", metavar="PATH", help="Write the JSON report here ('-' = stdout).")] = None,
    html_path: Annotated[
        Optional[str], typer.Option("--html", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["html"])
    ] = None,
    markdown_path: Annotated[
        Optional[str], typer.Option("--markdown", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["markdown"])
    ] = None,
    sarif_path: Annotated[
        Optional[str], typer.Option("--sarif", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["sarif"])
    ] = None,
    output_format: Annotated[
        Optional[str], typer.Option("--output-format", rich_help_panel="Reports", metavar="FORMAT", help=OUTPUT_FORMAT_HELP)
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel="Reports", metavar="", help=QUIET_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", rich_help_panel="Reports", metavar="", help=VERBOSE_HELP)] = False,
    config: Annotated[Optional[str], typer.Option("--config", rich_help_panel="Configuration", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", rich_help_panel="Configuration", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", rich_help_panel="Configuration", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """Trace the model, run the rules and comparisons, and write the reports.

    Every option but --config, --isolated, --debug and --write-baseline can also live in
    \\[tool.torchaudit] of the nearest pyproject.toml (relative paths there are relative to it);
    the command line wins, key by key."""
    from torchaudit.errors import TorchAuditError

    command = _command_line()
    try:
        from torchaudit.settings import check_output, check_paths, resolve

        flags = dict(inputs=inputs, input_shape=input_shape, json=json_path, html=html_path, markdown=markdown_path,
                     sarif=sarif_path, fail_on=fail_on, select=select, ignore=ignore, baseline=baseline, compare=compare,
                     reference=reference, candidate=candidate, static_only=static_only, atol=atol, rtol=rtol, seed=seed,
                     checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, meta=meta, stream_weights=stream_weights,
                     output_format=output_format, against=against)
        settings = resolve(target, flags, config=config, isolated=isolated)
        detail = _detail(quiet, verbose)
        check_paths(settings)
        check_output(write_baseline, "--write-baseline")
        to_stderr = settings.stdout_report is not None
        _say_config(settings.config, to_stderr)

        from torchaudit.api import scan as run_scan
        from torchaudit.rules.baseline import apply_baseline, write_baseline as save_baseline

        # with a report on stdout ('-'), stdout carries only that report: the model's own prints go to stderr
        with contextlib.redirect_stdout(sys.stderr) if to_stderr else contextlib.nullcontext():
            report = run_scan(target, settings=settings, command=command, progress=True)
        if write_baseline:
            save_baseline(report, write_baseline)
        gate = settings.baseline or write_baseline
        if gate:
            report = apply_baseline(report, gate)
        failed = _write(report, settings.json, settings.html, settings.markdown, settings.sarif)
    except TorchAuditError as exc:
        _fail(exc, debug)
        return
    except Exception as exc:  # noqa: BLE001 - a bug: say so, keep the traceback under --debug
        _fail(exc, debug)
        return
    _show(report, settings.output_format, to_stderr, detail)
    if failed is not None:  # the other reports and the summary are out: now say which path failed
        _fail(failed, debug)
    raise typer.Exit(report.exit_code)


def _show(report: Any, output_format: str, to_stderr: bool, detail: str) -> None:
    """The terminal output in ``--output-format``."""
    from torchaudit.reports import terminal

    if output_format == "concise":
        terminal.print_concise(report, to_stderr=to_stderr)
    elif output_format == "github":
        terminal.print_github(report)
    elif output_format == "json":  # Settings refuses it beside another report on stdout ('-')
        from torchaudit.reports.json_report import render_json

        sys.stdout.write(render_json(report) + "\n")
    else:
        terminal.print_summary(report, to_stderr=to_stderr, detail=detail)


def _write(report: Any, json: str | None, html: str | None, markdown: str | None, sarif: str | None) -> Exception | None:
    """Write the requested reports ('-' = stdout); a report that cannot be written does not stop
    the others: its error is returned, for after the summary."""
    from torchaudit.reports.files import ReportWriteError, write_reports

    try:
        write_reports(report, json=json, html=html, markdown=markdown, sarif=sarif)
    except ReportWriteError as exc:
        return exc
    return None


def _detail(quiet: bool, verbose: bool) -> str:
    if quiet and verbose:
        from torchaudit.errors import OptionError

        raise OptionError("--quiet and --verbose contradict each other", "pass one of them")
    return "quiet" if quiet else "verbose" if verbose else "normal"


def _say_config(path: str | None, to_stderr: bool) -> None:
    """The first line of the output: which configuration file was read (nothing when none)."""
    if path is not None:
        from torchaudit.settings import shown

        typer.echo(f"config: {shown(path)}", err=to_stderr)


@app.command("rules")
def rules_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rules as JSON.")] = False,
) -> None:
    """List every rule: code, severity, 'lint' where torchaudit lint runs it too (it reads the source alone), and title."""
    from torchaudit.rules.engine import catalogue

    registry = catalogue()
    if as_json:
        import json

        data = [
            {"code": r.code, "severity": r.severity.value, "title": r.title, "lint": r.lint, "docs": dict(r.sections)}
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


@app.command(epilog=EPILOG)
def diff(
    target: Annotated[str, typer.Argument(
        metavar="[TARGET]", show_default=False,
        help="path/to/model.py, path/to/model.py:NAME, package.module:NAME or a save_pretrained directory. "
             "Leave it out when A and B are save_pretrained directories: the model is built from A's config.json.")],
    a: Annotated[str, typer.Argument(
        metavar="A", show_default=False,
        help="The first checkpoint (the reference): a file, a save_pretrained directory or a *.index.json (sharded).")],
    b: Annotated[Optional[str], typer.Argument(
        metavar="B", show_default=False, help="The second checkpoint (the candidate), as A.")] = None,
    inputs: Annotated[Optional[str], typer.Option("--inputs", rich_help_panel="Inputs", metavar="PATH:FN", help="Example inputs from a function: path.py:fn.")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", rich_help_panel="Inputs", metavar="SHAPE", help="A random input of this shape, e.g. 1,3,224,224 (repeatable).")] = None,
    trust_checkpoint: Annotated[
        Optional[bool], typer.Option("--trust-checkpoint/--no-trust-checkpoint", rich_help_panel="Checkpoint", metavar="", help="Unpickle with weights_only=False (only for files you made).")
    ] = None,
    static_only: Annotated[
        Optional[bool], typer.Option("--static-only/--no-static-only", rich_help_panel="Comparisons", metavar="",
                                     help="The tensor table and the checkpoint rules only: the model is built on the meta device and "
                                          "neither file is loaded into it (no comparison), so memory stays near the largest pair of tensors.")
    ] = None,
    stream_weights: Annotated[
        Optional[bool], typer.Option("--stream-weights/--no-stream-weights", rich_help_panel="Checkpoint", metavar="", help=STREAM_HELP)
    ] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", rich_help_panel="Comparisons", metavar="FLOAT", help="Absolute tolerance of the comparison, >= 0.")] = None,
    rtol: Annotated[Optional[float], typer.Option("--rtol", rich_help_panel="Comparisons", metavar="FLOAT", help="Relative tolerance of the comparison, >= 0.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", rich_help_panel="Comparisons", metavar="INT", help="Seed of random ops in the comparison (default 0).")] = None,
    fail_on: FailOn = None,
    json_path: Annotated[Optional[str], typer.Option("--json", rich_help_panel="Reports", metavar="PATH", help="Write the JSON report here ('-' = stdout).")] = None,
    html_path: Annotated[Optional[str], typer.Option("--html", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["html"])] = None,
    markdown_path: Annotated[Optional[str], typer.Option("--markdown", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["markdown"])] = None,
    sarif_path: Annotated[Optional[str], typer.Option("--sarif", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["sarif"])] = None,
    output_format: Annotated[
        Optional[str], typer.Option("--output-format", rich_help_panel="Reports", metavar="FORMAT", help=OUTPUT_FORMAT_HELP)
    ] = None,
    config: Annotated[Optional[str], typer.Option("--config", rich_help_panel="Configuration", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", rich_help_panel="Configuration", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", rich_help_panel="Configuration", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """Two checkpoints of one model: what changed per tensor, then where the activations part.

    'diff TARGET A B': the model, then two checkpoints (files, save_pretrained directories or *.index.json of shards).

    'diff DIR_A DIR_B': two save_pretrained directories; the model is built from DIR_A's config.json, and DIR_B's must match.

    The tensor table reads both checkpoints tensor by tensor; --static-only stops there (no comparison, no model loaded).
    --stream-weights runs the comparison on A's and B's safetensors weights read module by module (on by itself when both
    together exceed half of the available memory).

    Reads the inputs, input-shape, trust-checkpoint, static-only, stream-weights, json, html, markdown, sarif, output-format, atol, rtol,
    seed and fail-on keys of \\[tool.torchaudit]; the scan-only keys are not used here."""

    command = _command_line()
    try:
        import dataclasses

        from torchaudit.errors import CheckpointError
        from torchaudit.settings import check_paths, resolve

        flags = dict(inputs=inputs, input_shape=input_shape, trust_checkpoint=trust_checkpoint, static_only=static_only,
                     stream_weights=stream_weights, json=json_path, html=html_path, markdown=markdown_path, sarif=sarif_path, output_format=output_format,
                     atol=atol, rtol=rtol, seed=seed, fail_on=fail_on)
        settings = resolve(target, flags, config=config, isolated=isolated)
        check_paths(dataclasses.replace(settings, checkpoint=None, baseline=None))
        for path in (a, b) if b is not None else (a,):  # DIR_A DIR_B: the library says what DIR_A must be
            if not Path(path).exists():  # a folder: the loader says more
                raise CheckpointError(f"checkpoint not found: {path}", "check the path")
        to_stderr = settings.stdout_report is not None
        _say_config(settings.config, to_stderr)

        from torchaudit.diffing import diff as run_diff

        report = run_diff(target, a, b, settings=settings, command=command)  # b None: DIR_A DIR_B
        failed = _write(report, settings.json, settings.html, settings.markdown, settings.sarif)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        _fail(exc, debug)
        return
    if settings.output_format == "text":  # the tensor table, then the summary
        from torchaudit.reports.tensor_table import print_tensor_table

        print_tensor_table(report, to_stderr=to_stderr)
    _show(report, settings.output_format, to_stderr, "normal")
    if failed is not None:
        _fail(failed, debug)
    raise typer.Exit(report.exit_code)


CHECKPOINT_EPILOG = ("Exit codes: 0 pass; 1 the gate failed (a finding at or above --fail-on: an unsafe global is TA601, an error); "
                     "2 a file could not be read (one line on stderr each; the others are still checked) or bad options. "
                     "With several files the worst wins: 2, then 1, then 0. Settings: the select, ignore, fail-on, json, html, "
                     "markdown, sarif and output-format keys of \\[tool.torchaudit] in the nearest pyproject.toml (from the "
                     "working directory) or --config PATH; the command line wins.")
ALLOWLIST_HELP = ("Print the Python (imports and torch.serialization.add_safe_globals([...])) that lets torch.load(weights_only=True) "
                  "load these files: the globals outside the allowlist that are not dangerous; what is left out and why in comments. "
                  "It goes to stdout alone; everything else to stderr.")


@app.command("checkpoint", epilog=CHECKPOINT_EPILOG)
def checkpoint_command(
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE", help="Checkpoint files (.safetensors, .pt, .pth, .bin, .ckpt) or folders of them (every such file directly inside, e.g. shards)."),
    ],
    allowlist: Annotated[bool, typer.Option("--allowlist", rich_help_panel="Reports", metavar="", help=ALLOWLIST_HELP)] = False,
    select: Annotated[
        Optional[list[str]],
        typer.Option("--select", rich_help_panel="Rules and gate", metavar="CODES", help="Run only these rule codes or prefixes, e.g. TA6 (comma-separated, repeatable); rules that need a model are listed as skipped."),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option("--ignore", rich_help_panel="Rules and gate", metavar="CODES", help="Skip these rule codes or prefixes, e.g. TA310 (comma-separated, repeatable)."),
    ] = None,
    fail_on: FailOn = None,
    json_path: Annotated[Optional[str], typer.Option("--json", rich_help_panel="Reports", metavar="PATH", help="Write the JSON report here ('-' = stdout).")] = None,
    html_path: Annotated[Optional[str], typer.Option("--html", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["html"])] = None,
    markdown_path: Annotated[Optional[str], typer.Option("--markdown", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["markdown"])] = None,
    sarif_path: Annotated[Optional[str], typer.Option("--sarif", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["sarif"])] = None,
    output_format: Annotated[
        Optional[str], typer.Option("--output-format", rich_help_panel="Reports", metavar="FORMAT", help=OUTPUT_FORMAT_HELP)
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel="Reports", metavar="", help="Terminal: the errors and the verdict only (no block per file).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", rich_help_panel="Reports", metavar="", help=VERBOSE_HELP)] = False,
    config: Annotated[Optional[str], typer.Option("--config", rich_help_panel="Configuration", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", rich_help_panel="Configuration", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", rich_help_panel="Configuration", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """A checkpoint alone, no model: format, tensors, dtypes, parameters, and every global loading it would import.

    Each global is marked allowlisted, outside the allowlist or DANGEROUS (with why), by its fully
    qualified name, read from the pickle's opcodes: nothing is unpickled unless every global is on
    torch's weights-only allowlist, and then only with weights_only=True. Runs the rules that need
    only the checkpoint (TA307 NaN/Inf, TA310 pickled module, TA601 unsafe globals, TA604 torch
    version); the rules that compare it with a model run in 'torchaudit scan MODEL --checkpoint FILE'."""
    command = _command_line()
    try:
        import dataclasses

        from torchaudit.errors import OptionError
        from torchaudit.settings import check_paths, resolve

        flags = dict(select=select, ignore=ignore, fail_on=fail_on, json=json_path, html=html_path, markdown=markdown_path,
                     sarif=sarif_path, output_format=output_format)
        settings = resolve(None, flags, config=config, isolated=isolated)
        detail = _detail(quiet, verbose)
        check_paths(dataclasses.replace(settings, checkpoint=None, baseline=None, inputs=None))
        if allowlist and settings.stdout_report is not None:
            raise OptionError(f"--allowlist and the {settings.stdout_report} report both write to stdout",
                              "send the report to a file")
        to_stderr = allowlist or settings.stdout_report is not None
        _say_config(settings.config, to_stderr)

        from torchaudit.checkpoint_check import check_checkpoint

        report = check_checkpoint(files, settings=settings, command=command)
        failed = _write(report, settings.json, settings.html, settings.markdown, settings.sarif)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        _fail(exc, debug)
        return
    readable = len(report.checkpoint_files) > len(report.unreadable)
    if readable and settings.output_format == "text" and detail != "quiet":  # a block per file, then the summary
        from torchaudit.reports.checkpoint_summary import print_checkpoint_files

        print_checkpoint_files(report, to_stderr=to_stderr)
    if readable:  # a PASS over no file at all would read as a verdict on it
        _show(report, settings.output_format, to_stderr, detail)
    for f in report.unreadable:
        typer.echo(f"torchaudit: error: {f.error}", err=True)
    if allowlist:
        from torchaudit.reports.allowlist import allowlist_snippet

        sys.stdout.write(allowlist_snippet(report.checkpoint_files))
    if failed is not None:
        _fail(failed, debug)
    raise typer.Exit(report.exit_code)


LINT_EPILOG = ("Exit codes: 0 pass; 1 the gate failed (a finding at or above --fail-on); 2 a file could not be read or parsed "
               "(one line on stderr each; the other files are still checked) or bad options. Settings: the select, ignore, "
               "fail-on and output-format keys of \\[tool.torchaudit] in the nearest pyproject.toml (from the working directory) "
               "or --config PATH; the command line wins.")


@app.command("lint", epilog=LINT_EPILOG)
def lint_command(
    paths: Annotated[list[str], typer.Argument(metavar="PATH", help="Python files, or folders (every *.py below them).")],
    select: Annotated[
        Optional[list[str]],
        typer.Option("--select", rich_help_panel="Rules and gate", metavar="CODES", help="Run only these rule codes or prefixes, e.g. TA1,TA5 (comma-separated, repeatable); rules that need a model are listed as skipped."),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option("--ignore", rich_help_panel="Rules and gate", metavar="CODES", help="Skip these rule codes or prefixes, e.g. TA103,TA5 (comma-separated, repeatable)."),
    ] = None,
    fail_on: FailOn = None,
    output_format: Annotated[
        Optional[str], typer.Option("--output-format", rich_help_panel="Reports", metavar="FORMAT", help=OUTPUT_FORMAT_HELP)
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel="Reports", metavar="", help=QUIET_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", rich_help_panel="Reports", metavar="", help=VERBOSE_HELP)] = False,
    config: Annotated[Optional[str], typer.Option("--config", rich_help_panel="Configuration", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", rich_help_panel="Configuration", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", rich_help_panel="Configuration", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """The rules that read the Python source alone, without importing torch: for pre-commit hooks and editors.

    No model is built and no input is needed: functional dropout left on, literal training=True,
    self.training branches, tensors made in forward without device=, hard-coded CUDA devices, NumPy
    in forward, torch.load without weights_only=True, strict=False loads, ... ('torchaudit rules'
    marks them 'lint'). Same codes, inline '# torchaudit: ignore[...]' comments, gate and output
    formats as scan; a finding's module is the nn.Module class whose code it is."""
    raise typer.Exit(_lint(paths, select, ignore, fail_on, output_format, quiet, verbose, config, isolated, debug))


def _lint(paths: list[str], select: list[str] | None, ignore: list[str] | None, fail_on: str | None, output_format: str | None,
          quiet: bool, verbose: bool, config: str | None, isolated: bool, debug: bool) -> int:
    """``torchaudit lint`` once its options are parsed (by typer, or by :func:`_fast_lint`): the exit code."""
    command = _command_line()
    try:
        from torchaudit.settings import resolve

        flags = dict(select=select, ignore=ignore, fail_on=fail_on, output_format=output_format)
        settings = resolve(None, flags, config=config, isolated=isolated)
        detail = _detail(quiet, verbose)
        to_stderr = settings.output_format == "json"
        _say_config(settings.config, to_stderr)

        from torchaudit.lint import lint

        report = lint(paths, settings=settings, command=command)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        try:
            _fail(exc, debug)
        except typer.Exit as done:
            return done.exit_code
    if report.extras["lint"]["files"]:  # a PASS over no file at all would read as a verdict on it
        _show(report, settings.output_format, False, detail)
    for line in report.source_errors:
        typer.echo(f"torchaudit: error: {line}", err=True)
    return report.exit_code


class _NotFast(Exception):
    """The fast parser leaves this command line to typer (help, a usage error, anything unusual)."""


def _fast_lint(argv: list[str]) -> int | None:
    """``torchaudit lint ARGS`` parsed without typer, or ``None`` to let typer parse it.

    typer coerces every option through pydantic, whose import alone costs about 0.2 s: more than
    lint spends on a file (DESIGN.md: lint under 0.3 s per file, for pre-commit hooks). So the
    console script parses a plain lint command line with argparse and calls the same
    :func:`_lint`; ``--help``, a usage error or anything it does not know goes to typer, which
    answers as for every command. ``tests/test_lint_cli.py`` checks that both take the same options
    and give the same output."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # noqa: D102 - typer words usage errors
            raise _NotFast(message)

    if any(a in ("-h", "--help") for a in argv):
        return None
    parser = Parser(prog="torchaudit lint", add_help=False, allow_abbrev=False)
    parser.add_argument("paths", nargs="+")
    for name in ("--select", "--ignore"):
        parser.add_argument(name, action="append")
    for name in ("--fail-on", "--output-format", "--config"):
        parser.add_argument(name)
    for names in (("--quiet", "-q"), ("--verbose", "-v"), ("--isolated",), ("--debug",)):
        parser.add_argument(*names, action="store_true")
    try:
        ns = parser.parse_args(argv)
    except _NotFast:
        return None
    if any(p.startswith("-") for p in ns.paths):  # an option argparse took for a path: typer says what is wrong
        return None
    return _lint(ns.paths, ns.select, ns.ignore, ns.fail_on, ns.output_format, ns.quiet, ns.verbose, ns.config, ns.isolated,
                 ns.debug)


CI_EPILOG = ("Exit codes: as scan's (0 pass; 1 the gate failed; 2 could not run). Reads GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, "
             "GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL, GITHUB_SERVER_URL, GITHUB_RUN_ID, GITHUB_STEP_SUMMARY and "
             "GITHUB_OUTPUT; settings as for scan (\\[tool.torchaudit] of the nearest pyproject.toml; the command line wins).")


@app.command("ci", epilog=CI_EPILOG)
def ci_command(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="path/to/model.py, path/to/model.py:NAME or package.module:NAME.")],
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", metavar="PATH", help="Check this checkpoint against the model.")] = None,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", metavar="NAMES", help="Comparisons to run (comma-separated, repeatable; default auto).")] = None,
    fail_on: Annotated[Optional[str], typer.Option("--fail-on", metavar="LEVEL", help="Fail when a finding is at or above: error, warning, info or never.")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", metavar="SHAPE", help="A random input of this shape, e.g. 1,3,224,224 (repeatable).")] = None,
    inputs: Annotated[Optional[str], typer.Option("--inputs", metavar="PATH:FN", help="Example inputs from a function: path.py:fn.")] = None,
    static_only: Annotated[Optional[bool], typer.Option("--static-only/--no-static-only", metavar="", help="Skip the dynamic stage.")] = None,
    select: Annotated[Optional[list[str]], typer.Option("--select", metavar="CODES", help="Run only these rule codes or prefixes.")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", metavar="CODES", help="Skip these rule codes or prefixes.")] = None,
    output_dir: Annotated[str, typer.Option("--output-dir", metavar="DIR", help="Where the reports go: torchaudit.sarif, .html, .md, .json.")] = "torchaudit-report",
    comment: Annotated[bool, typer.Option("--comment/--no-comment", metavar="", help="Post (or update) one comment on the pull request.")] = True,
    artifact_name: Annotated[str, typer.Option("--artifact-name", metavar="NAME", help="The artifact the HTML is uploaded as (named in the comment).")] = "torchaudit-report",
    config: Annotated[Optional[str], typer.Option("--config", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """Scan for a GitHub workflow (what the torchaudit action runs): reports in --output-dir,
    annotations, the job summary, step outputs, and one pull-request comment kept up to date."""
    import os

    command = _command_line()
    try:
        from torchaudit.settings import check_paths, resolve

        flags = dict(checkpoint=checkpoint, compare=compare, fail_on=fail_on, input_shape=input_shape, inputs=inputs,
                     static_only=static_only, select=select, ignore=ignore)
        settings = resolve(target, flags, config=config, isolated=isolated)
        check_paths(settings)
        _say_config(settings.config, False)

        from torchaudit.ci import GitHubEnv, run_ci

        code = run_ci(target, settings, GitHubEnv.from_environ(os.environ), Path(output_dir), comment=comment,
                      artifact=artifact_name, command=command, say=typer.echo)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        _fail(exc, debug)
        return
    raise typer.Exit(code)


RECORD_EPILOG = ("Exit codes: 0 recorded; 2 could not record (one line on stderr says why). Settings: inputs, input-shape, "
                 "checkpoint, trust-checkpoint and seed from \\[tool.torchaudit] of the nearest pyproject.toml; the command line wins.")


@app.command("record", epilog=RECORD_EPILOG)
def record_command(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="path/to/model.py, path/to/model.py:NAME, package.module:NAME or a save_pretrained folder.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="RUN", help="The folder to write the recording to (made if missing; an earlier recording there is replaced).")],
    inputs: Annotated[Optional[str], typer.Option("--inputs", rich_help_panel="Inputs", metavar="PATH:FN", help="Example inputs from a function: path.py:fn.")] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", rich_help_panel="Inputs", metavar="SHAPE", help="A random input of this shape, e.g. 1,3,224,224 or 8,128:int64 (repeatable).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", rich_help_panel="Checkpoint", metavar="PATH", help="Load this checkpoint into the model first.")] = None,
    trust_checkpoint: Annotated[Optional[bool], typer.Option("--trust-checkpoint/--no-trust-checkpoint", rich_help_panel="Checkpoint", metavar="", help="Unpickle the checkpoint with weights_only=False (only for files you made).")] = None,
    meta: Annotated[Optional[bool], typer.Option("--meta/--no-meta", rich_help_panel="Checkpoint", metavar="", help="Refused: a recording needs values.")] = None,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="Run on cpu or cuda[:N].")] = "cpu",
    dtype: Annotated[Optional[str], typer.Option("--dtype", metavar="DTYPE", help="Run in this dtype, e.g. float32, bfloat16 (default: the model's own).")] = None,
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="eval or train.")] = "eval",
    granularity: Annotated[str, typer.Option("--granularity", metavar="LEVEL", help="op: every node's value (local error per op); module: leaf-module calls only (smaller; local error per module).")] = "op",
    seed: Annotated[Optional[int], typer.Option("--seed", metavar="INT", help="Seed of the inputs and random ops (default 0).")] = None,
    config: Annotated[Optional[str], typer.Option("--config", rich_help_panel="Configuration", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", rich_help_panel="Configuration", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", rich_help_panel="Configuration", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """Run the model once and record every node's output (safetensors shards + a JSON manifest), to compare on another machine.

    Then 'torchaudit scan TARGET --against RUN' compares a live run with it, node by node, and
    'torchaudit compare RUN_A RUN_B' compares two recordings."""
    try:
        from torchaudit.settings import resolve

        flags = dict(inputs=inputs, input_shape=input_shape, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint,
                     meta=meta, seed=seed)
        settings = resolve(target, flags, config=config, isolated=isolated)
        _say_config(settings.config, True)
        from torchaudit.recording import record, summary_line

        with _RecordProgress() as bar, contextlib.redirect_stdout(sys.stderr):
            manifest = record(target, output, settings=settings, device=device, dtype=dtype, mode=mode,
                              granularity=granularity, progress=bar)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        _fail(exc, debug)
        return
    typer.echo(summary_line(manifest, output))


class _RecordProgress:
    """A progress bar on stderr while a recording runs (only on a terminal)."""

    def __enter__(self) -> "_RecordProgress":
        self.bar: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("recording"), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True),
                                transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("record", total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total or None)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@app.command("compare", epilog=EPILOG)
def compare_command(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="The reference recording (a folder written by 'torchaudit record').")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The recording to compare with it.")],
    atol: Annotated[Optional[float], typer.Option("--atol", metavar="FLOAT", help="Absolute tolerance, >= 0 (default: assert_close's for RUN_B's dtype).")] = None,
    rtol: Annotated[Optional[float], typer.Option("--rtol", metavar="FLOAT", help="Relative tolerance, >= 0 (default: assert_close's for RUN_B's dtype).")] = None,
    fail_on: FailOn = None,
    json_path: Annotated[Optional[str], typer.Option("--json", rich_help_panel="Reports", metavar="PATH", help="Write the JSON report here ('-' = stdout).")] = None,
    html_path: Annotated[Optional[str], typer.Option("--html", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["html"])] = None,
    markdown_path: Annotated[Optional[str], typer.Option("--markdown", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["markdown"])] = None,
    sarif_path: Annotated[Optional[str], typer.Option("--sarif", rich_help_panel="Reports", metavar="PATH", help=REPORT_HELP["sarif"])] = None,
    output_format: Annotated[Optional[str], typer.Option("--output-format", rich_help_panel="Reports", metavar="FORMAT", help=OUTPUT_FORMAT_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel="Reports", metavar="", help=QUIET_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", rich_help_panel="Reports", metavar="", help=VERBOSE_HELP)] = False,
    config: Annotated[Optional[str], typer.Option("--config", rich_help_panel="Configuration", metavar="PATH", help=CONFIG_HELP)] = None,
    isolated: Annotated[bool, typer.Option("--isolated", rich_help_panel="Configuration", metavar="", help=ISOLATED_HELP)] = False,
    debug: Annotated[bool, typer.Option("--debug", rich_help_panel="Configuration", metavar="", help="Show tracebacks of errors.")] = False,
) -> None:
    """Two recordings, no model: the error per node and where they first part (by total error; local error needs 'scan --against')."""
    command = _command_line()
    try:
        from torchaudit.settings import check_paths, resolve

        flags = dict(atol=atol, rtol=rtol, fail_on=fail_on, json=json_path, html=html_path, markdown=markdown_path,
                     sarif=sarif_path, output_format=output_format)
        settings = resolve(None, flags, config=config, isolated=isolated)
        detail = _detail(quiet, verbose)
        check_paths(settings)
        to_stderr = settings.stdout_report is not None
        _say_config(settings.config, to_stderr)
        from torchaudit.recording import compare_recordings

        report = compare_recordings(run_a, run_b, settings=settings, command=command)
        failed = _write(report, settings.json, settings.html, settings.markdown, settings.sarif)
    except Exception as exc:  # noqa: BLE001 - TorchAuditError: one line; anything else: a bug, same treatment
        _fail(exc, debug)
        return
    _show(report, settings.output_format, to_stderr, detail)
    if failed is not None:
        _fail(failed, debug)
    raise typer.Exit(report.exit_code)


def main() -> None:
    if sys.argv[1:2] == ["lint"]:
        code = _fast_lint(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    app()


if __name__ == "__main__":
    main()
