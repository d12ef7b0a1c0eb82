"""``torchaudit ci`` (torchaudit/ci.py) and the GitHub Action that runs it (action.yml), in a
simulated workflow: ``GITHUB_*`` variables, an event payload, the step summary and output
files, and a local HTTP server standing in for GitHub's REST API (nothing leaves the machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import EXAMPLES, ROOT, invoke_cli
from torchaudit.ci import MARKER

yaml = pytest.importorskip("yaml")  # PyYAML: transformers (a dev dependency) requires it

REPO = "octo/models"
PR = 7
PAGE = 2  # comments per page: the client must follow GitHub's Link header


class FakeGitHub:
    """The issue-comment endpoints of GitHub's REST API, in memory, on 127.0.0.1."""

    def __init__(self) -> None:
        self.comments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, Any] | None, str | None]] = []  # method, path, body, auth
        self.refuse_writes = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> tuple[str, dict[str, Any] | None]:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.command, self.path, body, self.headers.get("Authorization")))
                return urlparse(self.path).path, body

            def do_GET(self) -> None:
                path, _ = self._record()
                if path != f"/repos/{REPO}/issues/{PR}/comments":
                    return self._reply(404, {"message": "Not Found"})
                page = int(parse_qs(urlparse(self.path).query).get("page", ["1"])[0])
                chunk = fake.comments[(page - 1) * PAGE : page * PAGE]
                more = len(fake.comments) > page * PAGE
                link = {"Link": f'<{fake.url}{path}?per_page=100&page={page + 1}>; rel="next"'} if more else {}
                self._reply(200, chunk, link)

            def do_POST(self) -> None:
                path, body = self._record()
                if fake.refuse_writes:
                    return self._reply(403, {"message": "Resource not accessible by integration"})
                assert body is not None and path == f"/repos/{REPO}/issues/{PR}/comments"
                comment = {"id": 100 + len(fake.comments), "body": body["body"]}
                comment["html_url"] = f"https://github.com/{REPO}/pull/{PR}#issuecomment-{comment['id']}"
                fake.comments.append(comment)
                self._reply(201, comment)

            def do_PATCH(self) -> None:
                path, body = self._record()
                assert body is not None
                comment = next(c for c in fake.comments if path.endswith(f"/issues/comments/{c['id']}"))
                comment["body"] = body["body"]
                self._reply(200, comment)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield fake
    fake.close()


@pytest.fixture
def workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, github: FakeGitHub) -> Path:
    """A checkout with the example model, in a pull-request run's environment."""
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "number": PR, "pull_request": {"number": PR}}))
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO,
           "GITHUB_TOKEN": "t0k", "GITHUB_API_URL": github.url, "GITHUB_SERVER_URL": "https://github.com",
           "GITHUB_RUN_ID": "42", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
           "GITHUB_OUTPUT": str(tmp_path / "output.txt")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def _outputs(folder: Path) -> dict[str, str]:
    lines = (folder / "output.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def _ci(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke_cli("ci", "examples/mlp_bn_dropout.py", "--static-only", *args, cwd=folder)


def test_a_pull_request_gets_one_comment_updated_on_each_run(workflow: Path, github: FakeGitHub) -> None:
    github.comments.append({"id": 1, "body": "LGTM", "html_url": "u1"})
    out = _ci(workflow)
    assert out.returncode == 1, out.stderr  # the gate: TA101 is an error
    assert out.stdout.splitlines()[0].startswith("::error file=examples/mlp_bn_dropout.py,line=18,col=13,title=TA101")
    outputs = _outputs(workflow)
    assert outputs["verdict"] == "fail" and outputs["exit-code"] == "1"
    assert outputs["comment-url"] == f"https://github.com/{REPO}/pull/{PR}#issuecomment-101"
    for fmt, name in (("sarif", "torchaudit.sarif"), ("html", "torchaudit.html"), ("markdown", "torchaudit.md"),
                      ("json", "torchaudit.json")):
        assert outputs[fmt] == f"torchaudit-report/{name}" and (workflow / outputs[fmt]).is_file()
    assert json.loads((workflow / outputs["sarif"]).read_text())["version"] == "2.1.0"
    summary = (workflow / "summary.md").read_text()
    assert summary.startswith("### ") and "TA101" in summary
    posted = github.comments[-1]["body"]
    assert posted.startswith(MARKER + "\n") and "TA101" in posted
    assert f"the `torchaudit-report` artifact of [this run](https://github.com/{REPO}/actions/runs/42)" in posted
    assert [(m, urlparse(p).path) for m, p, _, _ in github.requests] == [
        ("GET", f"/repos/{REPO}/issues/{PR}/comments"), ("POST", f"/repos/{REPO}/issues/{PR}/comments")]
    assert {auth for *_, auth in github.requests} == {"Bearer t0k"}
    # the next run updates the same comment
    github.requests.clear()
    (workflow / "output.txt").unlink()
    out = _ci(workflow, "--ignore", "TA101")
    assert out.returncode == 0, out.stdout
    assert [c["id"] for c in github.comments] == [1, 101] and github.comments[0]["body"] == "LGTM"
    assert "TA101" not in github.comments[1]["body"] and github.comments[1]["body"].startswith(MARKER)
    assert [m for m, *_ in github.requests] == ["GET", "PATCH"]
    assert _outputs(workflow)["verdict"] == "pass"


def test_the_comment_is_found_on_a_later_page(workflow: Path, github: FakeGitHub) -> None:
    github.comments += [{"id": i, "body": f"comment {i}", "html_url": f"u{i}"} for i in range(1, 5)]
    github.comments.append({"id": 5, "body": f"{MARKER}\nold report", "html_url": "u5"})
    assert _ci(workflow).returncode == 1
    assert [m for m, *_ in github.requests] == ["GET", "GET", "GET", "PATCH"]
    assert len(github.comments) == 5 and "TA101" in github.comments[-1]["body"]
    assert _outputs(workflow)["comment-url"] == "u5"


def test_a_push_posts_no_comment(workflow: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    assert _ci(workflow).returncode == 1
    assert github.requests == [] and _outputs(workflow)["comment-url"] == ""
    assert (workflow / "summary.md").is_file()
    assert _ci(workflow, "--no-comment").returncode == 1 and github.requests == []


def test_a_comment_that_cannot_be_posted_is_a_warning(workflow: Path, github: FakeGitHub) -> None:
    github.refuse_writes = True
    out = _ci(workflow)
    assert out.returncode == 1  # the gate's, not the comment's
    assert (f"::warning title=torchaudit::could not post the pull-request comment (POST /repos/{REPO}/issues/{PR}/comments: "
            "HTTP 403 Forbidden)") in out.stdout
    assert _outputs(workflow)["comment-url"] == ""


def test_no_token_skips_the_comment(workflow: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    out = _ci(workflow)
    assert out.returncode == 1 and github.requests == []
    assert "::notice title=torchaudit::no GITHUB_TOKEN: the pull-request comment was skipped" in out.stdout


def test_a_scan_that_cannot_run_is_exit_2_with_its_reason(workflow: Path, github: FakeGitHub) -> None:
    out = invoke_cli("ci", "examples/missing.py", cwd=workflow)
    assert out.returncode == 2 and out.stderr.startswith("torchaudit: error: model file not found: examples/missing.py")
    assert out.stdout.startswith("::error title=torchaudit could not run::model file not found")
    (workflow / "examples" / "broken.py").write_text("import torch\n\ndef build_model():\n    raise RuntimeError('boom')\n")
    out = invoke_cli("ci", "examples/broken.py", "--static-only", cwd=workflow)
    assert out.returncode == 2 and "::error title=torchaudit could not run::" in out.stdout and "boom" in out.stderr
    assert _outputs(workflow) == {"verdict": "error", "exit-code": "2"} and github.requests == []


# --- action.yml ------------------------------------------------------------------------------


def _action() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def test_action_is_a_composite_that_runs_the_tested_entry_point() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    steps = {s["name"]: s for s in action["runs"]["steps"]}
    scan = steps["Scan"]
    assert scan["id"] == "scan" and '"$TA_PYTHON" -m torchaudit "${args[@]}"' in scan["run"] and "args=(ci " in scan["run"]
    text = (ROOT / "action.yml").read_text()
    for name in action["inputs"]:
        assert f"inputs.{name} " in text or f"inputs.{name}}}" in text, f"input {name} is not used"
    sarif = steps["Upload SARIF to code scanning"]
    assert sarif["uses"].startswith("github/codeql-action/upload-sarif@") and "always()" in sarif["if"]
    artifact = steps["Upload the reports"]
    assert artifact["uses"].startswith("actions/upload-artifact@") and "always()" in artifact["if"]
    assert set(action["outputs"]) <= {"verdict", "exit-code", "sarif", "html", "markdown", "comment-url"}


@pytest.mark.slow  # the action's own bash step, for real, in a fresh interpreter
def test_the_actions_scan_step_runs_as_the_workflow_would(workflow: Path, github: FakeGitHub) -> None:
    step = next(s for s in _action()["runs"]["steps"] if s.get("id") == "scan")
    env = {**os.environ, "RUNNER_TEMP": str(workflow / "runner-temp"), "TA_PYTHON": sys.executable,
           "TA_TARGET": "examples/mlp_bn_dropout.py", "TA_CHECKPOINT": "", "TA_COMPARE": "", "TA_FAIL_ON": "warning",
           "TA_INPUT_SHAPE": "4,16\n", "TA_STATIC_ONLY": "true", "TA_COMMENT": "true", "TA_ARTIFACT": "model-audit"}
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=workflow, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    outputs = _outputs(workflow)
    assert outputs["html"] == str(workflow / "runner-temp" / "torchaudit-report" / "torchaudit.html")
    assert Path(outputs["html"]).is_file() and outputs["comment-url"].endswith("#issuecomment-100")
    assert "`model-audit` artifact" in github.comments[0]["body"]
    html = Path(outputs["html"]).read_text()  # the command it ran, as the report records it
    assert "--input-shape 4,16" in html and "--fail-on warning" in html and "--static-only" in html
    assert "--checkpoint" not in html and "--compare" not in html and "--no-comment" not in html
