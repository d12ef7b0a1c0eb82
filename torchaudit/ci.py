"""``torchaudit ci``: what the GitHub Action (``action.yml``) runs in a workflow.

One scan, then everything a pull request shows of it:

- the reports in one folder: ``torchaudit.sarif`` (the action uploads it to code scanning),
  ``torchaudit.html`` (uploaded as an artifact), ``torchaudit.md`` and ``torchaudit.json``;
- GitHub annotations on stdout (``::error file=...,line=...::``), as ``--output-format github``;
- the Markdown appended to the job summary (``$GITHUB_STEP_SUMMARY``);
- step outputs in ``$GITHUB_OUTPUT``: ``verdict`` (pass, fail or error), ``exit-code``,
  ``sarif``, ``html``, ``markdown``, ``json``, ``comment-url``;
- on a pull request (``pull_request``/``pull_request_target`` events, the number read from
  ``$GITHUB_EVENT_PATH``) one comment with the Markdown, found again on the next run by a hidden
  marker and updated in place, through the REST API at ``$GITHUB_API_URL`` with
  ``$GITHUB_TOKEN`` (urllib; no dependency). A comment that cannot be posted (a fork's
  read-only token) is a warning, never the job's failure.

The exit code is the scan's: 0 pass, 1 the gate failed, 2 could not run.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from torchaudit.report import Report
    from torchaudit.settings import Settings

MARKER = "<!-- torchaudit-report -->"  # the hidden line that identifies torchaudit's pull-request comment
REPORTS = {"sarif": "torchaudit.sarif", "html": "torchaudit.html", "markdown": "torchaudit.md", "json": "torchaudit.json"}
PR_EVENTS = ("pull_request", "pull_request_target")


@dataclass(frozen=True)
class GitHubEnv:
    """What a workflow step knows about its run, from the ``GITHUB_*`` variables."""

    repository: str | None = None  # owner/name
    event_name: str | None = None
    event: Mapping[str, Any] = field(default_factory=dict)  # the webhook payload ($GITHUB_EVENT_PATH)
    token: str | None = None
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    run_id: str | None = None
    step_summary: Path | None = None
    output: Path | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GitHubEnv:
        event: Mapping[str, Any] = {}
        path = environ.get("GITHUB_EVENT_PATH")
        if path:
            try:
                event = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                event = {}
        return cls(
            repository=environ.get("GITHUB_REPOSITORY") or None,
            event_name=environ.get("GITHUB_EVENT_NAME") or None,
            event=event if isinstance(event, dict) else {},
            token=environ.get("GITHUB_TOKEN") or None,
            api_url=(environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            server_url=(environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
            run_id=environ.get("GITHUB_RUN_ID") or None,
            step_summary=Path(environ["GITHUB_STEP_SUMMARY"]) if environ.get("GITHUB_STEP_SUMMARY") else None,
            output=Path(environ["GITHUB_OUTPUT"]) if environ.get("GITHUB_OUTPUT") else None,
        )

    @property
    def pull_request(self) -> int | None:
        """The pull request's number, on a pull-request event."""
        if self.event_name not in PR_EVENTS:
            return None
        number = self.event.get("pull_request", {}).get("number", self.event.get("number"))
        return number if isinstance(number, int) else None

    @property
    def run_url(self) -> str | None:
        if self.repository and self.run_id:
            return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"
        return None


class GitHubError(Exception):
    """A REST call that failed: its method, path and status (or why there was none)."""


Opener = Callable[..., Any]  # urllib.request.urlopen's signature: (request, timeout=...) -> response


class GitHubAPI:
    """The few REST calls the action makes, through urllib (``opener`` replaces ``urlopen`` in tests)."""

    def __init__(self, api_url: str, token: str, opener: Opener | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.opener = opener or urllib.request.urlopen

    def call(self, method: str, url: str, body: Mapping[str, Any] | None = None) -> tuple[Any, Mapping[str, str]]:
        """``(decoded JSON, response headers)`` of one request; :class:`GitHubError` otherwise."""
        if not url.startswith(("http://", "https://")):
            url = self.api_url + url
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "torchaudit-action",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        where = f"{method} {url.removeprefix(self.api_url)}"
        try:
            with self.opener(request, timeout=30) as response:
                text = response.read().decode("utf-8") or "null"
                return json.loads(text), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise GitHubError(f"{where}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise GitHubError(f"{where}: {getattr(exc, 'reason', exc)}") from None

    def upsert_comment(self, repository: str, number: int, body: str) -> str:
        """Update the pull request's comment that carries :data:`MARKER`, or post one; its URL."""
        url: str | None = f"/repos/{repository}/issues/{number}/comments?per_page=100"
        for _ in range(100):  # pages of 100 comments
            if url is None:
                break
            comments, headers = self.call("GET", url)
            for comment in comments if isinstance(comments, list) else []:
                if MARKER in str(comment.get("body", "")):
                    updated, _ = self.call("PATCH", f"/repos/{repository}/issues/comments/{comment['id']}", {"body": body})
                    return str(updated.get("html_url", ""))
            url = _next_page(headers.get("Link") or headers.get("link"))
        posted, _ = self.call("POST", f"/repos/{repository}/issues/{number}/comments", {"body": body})
        return str(posted.get("html_url", ""))


def _next_page(link: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (GitHub's pagination)."""
    for part in (link or "").split(","):
        m = re.match(r'\s*<([^>]+)>\s*;\s*rel="next"', part)
        if m:
            return m.group(1)
    return None


def comment_body(report: Report, env: GitHubEnv, artifact: str) -> str:
    """The pull-request comment: the marker, the Markdown report, and where the HTML is."""
    from torchaudit.reports.markdown import render_markdown

    where = f"the `{artifact}` artifact of [this run]({env.run_url})" if env.run_url else f"the `{artifact}` artifact"
    return f"{MARKER}\n{render_markdown(report).rstrip()}\n\nThe full HTML report is in {where}.\n"


def run_ci(target: str, settings: Settings, env: GitHubEnv, out_dir: Path, *, comment: bool = True,
           artifact: str = "torchaudit-report", command: str | None = None, opener: Opener | None = None,
           say: Callable[[str], None] = print) -> int:
    """Scan ``target``, write the reports to ``out_dir``, annotate, summarize, comment; the exit code.
    A scan that cannot run (``TorchAuditError``) is annotated and recorded as ``verdict=error``,
    then raised."""
    from torchaudit.api import scan
    from torchaudit.errors import TorchAuditError
    from torchaudit.reports.terminal import print_github

    try:
        report = scan(target, settings=settings, command=command)
    except TorchAuditError as exc:  # an annotation for the pull request, the outputs, then the caller's one line (exit 2)
        say(f"::error title=torchaudit could not run::{_gh(exc.one_line())}")
        _outputs(env, {"verdict": "error", "exit-code": "2"})
        raise
    paths = {fmt: out_dir / name for fmt, name in REPORTS.items()}
    for fmt, path in paths.items():
        report.write(path, fmt)
    print_github(report)
    if env.step_summary is not None:
        with env.step_summary.open("a", encoding="utf-8") as f:
            f.write(paths["markdown"].read_text(encoding="utf-8").rstrip() + "\n\n")
    url = _comment(report, env, artifact, say, opener) if comment else None
    _outputs(env, {"verdict": report.summary.verdict, "exit-code": str(report.exit_code),
                   **{fmt: str(path) for fmt, path in paths.items()}, "comment-url": url or ""})
    return report.exit_code


def _comment(report: Report, env: GitHubEnv, artifact: str, say: Callable[[str], None], opener: Opener | None) -> str | None:
    number = env.pull_request
    if number is None or env.repository is None:
        return None  # not a pull request: nothing to comment on
    if env.token is None:
        say("::notice title=torchaudit::no GITHUB_TOKEN: the pull-request comment was skipped (pass the action's token input)")
        return None
    try:
        return GitHubAPI(env.api_url, env.token, opener).upsert_comment(env.repository, number, comment_body(report, env, artifact))
    except GitHubError as exc:
        say(f"::warning title=torchaudit::could not post the pull-request comment ({_gh(str(exc))}); a pull request "
            "from a fork gets a read-only token: the job summary and the artifact still have the report")
        return None


def _outputs(env: GitHubEnv, values: Mapping[str, str]) -> None:
    if env.output is None:
        return
    with env.output.open("a", encoding="utf-8") as f:
        for key, value in values.items():
            f.write(f"{key}={value}\n")


def _gh(text: str) -> str:
    """Text safe inside a workflow command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
