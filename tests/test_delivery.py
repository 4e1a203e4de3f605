"""Delivery re-checks the worker's claims on the final diff and is idempotent: one branch, one PR."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leviathan_lib.core.config import load_target
from leviathan_lib.cycle import steps as cycle
from leviathan_lib.cycle.delivery import DeliveryRejected, deliver
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from leviathan_lib.worker.backends.local import run_local_worker
from leviathan_lib.worker.contract import AttemptResult, AttemptSpec
from tests.airflow_helpers import commit_file

WHEN = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _prepare(tmp_path, backlog_edit=None):
    """A demo target read and decided as a cycle would, with the worker already run."""
    target_file = create_demo_target(tmp_path, target_id="deliver")
    if backlog_edit:
        bare = tmp_path / "repos" / "deliver.git"
        text = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
        commit_file(bare, tmp_path / "human", ".leviathan/backlog.yaml", backlog_edit(text), "human edit")
    target = load_target(target_file)
    repo_url = target.repo_location(target_file)
    read = cycle.read_backlog(target, repo_url, tmp_path / "cache")
    guard = cycle.check_guardrails(target, read, global_autonomy=True, open_prs=[], attempts=[],
                                   breaker_reset_at=None)
    plan = guard.attempt
    backlog, _ = cycle.parse_backlog(read.backlog_text, read.backlog_path)
    spec = AttemptSpec.model_validate({
        "spec_version": 1, "target_id": target.target_id, "repo_url": repo_url, "commit_sha": read.commit_sha,
        "task": backlog.by_id()[plan.task_id].model_dump(mode="json"),
        "allowed_path_prefixes": target.allowed_path_prefixes,
        "executor": {"kind": "recipe", "recipe": plan.recipe}, "attempt": plan.attempt, "timeout_seconds": 60,
    })
    result = run_local_worker(spec, workspace_root=tmp_path / "ws")
    assert result.outcome == "succeeded", result.error
    return target, read, plan, result, LocalForge(repo_url), tmp_path


@pytest.fixture
def prepared(tmp_path):
    return _prepare(tmp_path)


def _deliver(target, read, plan, result, forge, tmp_path):
    return deliver(target, read, plan, result, forge, run_id="run-1", commit_date=WHEN,
                   evidence_summary={"target_id": target.target_id, "checks": []}, scratch_dir=tmp_path)


def test_rerunning_delivery_returns_the_same_pr(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    first = _deliver(target, read, plan, result, forge, tmp_path)
    again = _deliver(target, read, plan, result, forge, tmp_path)
    assert (first.number, again.number) == (1, 1)
    assert [p.number for p in forge.list_prs()] == [1]


def test_crash_after_push_before_pr_creates_exactly_one_pr_on_rerun(prepared, monkeypatch):
    target, read, plan, result, forge, tmp_path = prepared

    def crash(**_kwargs):
        raise RuntimeError("killed between push and PR creation")

    monkeypatch.setattr(forge, "create_pr", crash)
    with pytest.raises(RuntimeError):
        _deliver(target, read, plan, result, forge, tmp_path)
    pushed = run_git(["--git-dir", str(forge.path), "rev-parse", f"refs/heads/{plan.branch}"]).stdout.strip()
    monkeypatch.undo()
    pr = _deliver(target, read, plan, result, forge, tmp_path)
    assert pr.number == 1 and len(forge.list_prs()) == 1
    # The commit is deterministic (same dates, same content), so the rerun pushed the very same commit.
    assert pr.head_sha == pushed


def _forged(result: AttemptResult, patch: str, paths: list[str]) -> AttemptResult:
    return result.model_copy(update={"patch": patch, "changed_paths": paths})


SYMLINK_PATCH = """diff --git a/docs/quickstart.md b/docs/quickstart.md
new file mode 120000
index 0000000..1111111
--- /dev/null
+++ b/docs/quickstart.md
@@ -0,0 +1 @@
+/etc/passwd
\\ No newline at end of file
"""


def test_final_diff_rejects_a_symlink_the_worker_did_not_report(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, _forged(result, SYMLINK_PATCH, ["docs/quickstart.md"]), forge, tmp_path)
    assert exc.value.code == "symlink"
    assert forge.list_prs() == []
    assert run_git(["--git-dir", str(forge.path), "branch", "--list", "agent/*"]).stdout == ""


def test_out_of_scope_paths_claimed_by_the_worker_are_rejected_before_anything_is_pushed(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    patch = result.patch.replace("docs/quickstart.md", "docs2/quickstart.md")
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, _forged(result, patch, ["docs2/quickstart.md"]), forge, tmp_path)
    assert exc.value.code == "scope_violation" and "docs2/quickstart.md" in str(exc.value)
    assert forge.list_prs() == []


def test_a_patch_that_edits_other_backlog_tasks_is_rejected_even_when_the_backlog_is_in_scope(tmp_path):
    def backlog_in_scope(text):
        return text.replace('      - "docs/quickstart.md"', '      - "docs/quickstart.md"\n      - ".leviathan/"', 1)

    target, read, plan, result, forge, tmp_path = _prepare(tmp_path, backlog_in_scope)
    work = tmp_path / "craft"
    run_git(["clone", "--quiet", str(forge.path), str(work)])
    backlog_file = work / ".leviathan" / "backlog.yaml"
    backlog_file.write_text(backlog_file.read_text().replace("ready: false", "ready: true", 1))
    run_git(["apply", "--index", "-"], cwd=work, input=result.patch)
    run_git(["add", "-A"], cwd=work)
    patch = run_git(["diff", "--cached", "--binary"], cwd=work).stdout
    forged = _forged(result, patch, [".leviathan/backlog.yaml", "docs/quickstart.md"])
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, forged, forge, tmp_path)
    assert exc.value.code == "backlog_edited"
    assert forge.list_prs() == []
