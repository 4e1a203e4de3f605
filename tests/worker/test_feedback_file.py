"""``$LEVIATHAN_REVIEW_FEEDBACK_FILE``: the review text reaches a recipe as a read-only file outside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

from leviathan_lib.worker.attempt import run_attempt
from tests.worker.test_attempt import BACKLOG, apply_on_fresh_clone, git, make_spec

PROBE = """\
import json, os
from pathlib import Path
name = os.environ.get("LEVIATHAN_REVIEW_FEEDBACK_FILE")
seen = {"name": name}
if name:
    seen["text"] = Path(name).read_text()
    try:
        Path(name).write_text("overwritten")
        seen["writable"] = True
    except OSError:
        seen["writable"] = False
Path("docs/seen.json").write_text(json.dumps(seen))
"""


def _repo(tmp_path: Path) -> tuple[Path, str]:
    work, bare = tmp_path / "src", tmp_path / "target.git"
    git("-c", "init.defaultBranch=main", "init", "--quiet", str(work))
    (work / ".leviathan").mkdir()
    (work / "docs").mkdir()
    (work / ".leviathan/backlog.yaml").write_text(BACKLOG)
    (work / ".leviathan/recipes.yaml").write_text(
        "recipes:\n  write-quickstart:\n    command: [\"python3\", \".leviathan/probe.py\"]\n")
    (work / ".leviathan/probe.py").write_text(PROBE)
    (work / "docs/index.md").write_text("# Docs\n")
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "target", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


def _seen(tmp_path: Path, repo: Path, sha: str, **spec) -> dict:
    result = run_attempt(make_spec(repo, sha, task={"allowed_paths": ["docs/"]}, **spec), tmp_path / "ws")
    assert result.outcome == "succeeded", result.error
    return json.loads((apply_on_fresh_clone(tmp_path, repo, sha, result.patch) / "docs/seen.json").read_text())


def test_the_review_text_is_a_read_only_file_outside_the_checkout(tmp_path):
    repo, sha = _repo(tmp_path)
    feedback = "Mention `widgets serve --port`.\n$(rm -rf /) stays text."
    cont = {"number": 1, "branch": "agent/docs-quickstart/1", "head_sha": sha, "start": "branch",
            "why": "changes_requested", "feedback": feedback}
    seen = _seen(tmp_path, repo, sha, continue_pr=cont)
    assert seen["text"] == feedback + "\n" and seen["writable"] is False
    assert not Path(seen["name"]).is_relative_to(tmp_path / "ws" / "checkout")


def test_no_feedback_no_variable(tmp_path):
    repo, sha = _repo(tmp_path)
    assert _seen(tmp_path, repo, sha) == {"name": None}
    cont = {"number": 1, "branch": "agent/docs-quickstart/1", "head_sha": sha, "start": "branch",
            "why": "retry_command", "feedback": None}
    assert _seen(tmp_path / "retry", repo, sha, continue_pr=cont) == {"name": None}
