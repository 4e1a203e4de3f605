"""CI statuses on the local forge: ``leviathan forge status`` per commit, combined per head, bounded."""

from __future__ import annotations

import json
import os

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.core.ci import CiCheck, ci_status, failure_report
from leviathan_lib.forge import ForgeError, LocalForge
from leviathan_lib.forge.local_ci import MAX_CONTEXTS
from tests.forge.test_local import Target


@pytest.fixture
def target(tmp_path):
    t = Target(tmp_path)
    t.commit("agent/t/1", {"docs/b.md": "b\n"})
    forge = LocalForge(t.bare)
    forge.create_pr(head="agent/t/1", base="main", title="t", body="")
    return t, forge


def test_statuses_combine_per_head_and_the_newest_report_of_a_context_wins(target, capsys):
    t, forge = target
    head = forge.get_pr(1).head_sha
    assert forge.ci_status(head).state == "none"
    args = ["forge", "status", "--repo", str(t.bare), "1", "--context"]
    assert main([*args, "ci/lint", "--state", "success"]) == 0
    assert main([*args, "ci/tests", "--state", "pending"]) == 0
    assert forge.ci_status(head).state == "pending"
    assert main([*args, "ci/tests", "--state", "failure", "--description", "3 tests failed"]) == 0
    status = forge.ci_status(head)
    assert status.state == "failure" and [c.name for c in status.failing] == ["ci/tests"]
    assert main([*args, "ci/tests", "--state", "success"]) == 0
    assert forge.ci_status(head).state == "success"
    assert "ci/tests: success on " + head in capsys.readouterr().out

    # A new head has no CI until someone reports on it; the old head keeps its statuses.
    new_head = t.commit("agent/t/1", {"docs/b.md": "c\n"})
    assert forge.get_pr(1).head_sha == new_head and forge.ci_status(new_head).state == "none"
    assert main(["forge", "status", "--repo", str(t.bare), "--branch", "agent/t/1", "--context", "ci/tests",
                 "--state", "failure"]) == 0
    assert forge.ci_status(new_head).state == "failure" and forge.ci_status(head).state == "success"

    capsys.readouterr()
    assert main(["forge", "show", "--repo", str(t.bare), "1"]) == 0
    shown = capsys.readouterr().out
    assert f"--- CI on {new_head}: failure" in shown and "failure  ci/tests" in shown
    assert main(["forge", "show", "--repo", str(t.bare), "1", "--json"]) == 0
    assert [s["context"] for s in json.loads(capsys.readouterr().out)["statuses"]] == ["ci/tests"]


def test_bad_status_input_is_refused_with_exit_2(target, capsys):
    t, forge = target
    base = ["forge", "status", "--repo", str(t.bare)]
    assert main([*base, "--context", "x", "--state", "success"]) == 2  # neither a PR nor a branch
    assert main([*base, "1", "--branch", "main", "--context", "x", "--state", "success"]) == 2
    assert main([*base, "--branch", "nope", "--context", "x", "--state", "success"]) == 2
    assert main([*base, "1", "--context", "bad\nname", "--state", "success"]) == 2
    assert main([*base, "1", "--context", "x", "--state", "success", "--description", "d" * 5000]) == 2
    assert main([*base, "9", "--context", "x", "--state", "success"]) == 2
    err = capsys.readouterr().err
    assert "give a pull request number or --branch" in err and "no commit or branch 'nope'" in err
    assert forge.ci_status(forge.get_pr(1).head_sha).state == "none"


def test_contexts_per_commit_are_bounded_and_a_planted_record_is_an_error(target):
    t, forge = target
    head = forge.get_pr(1).head_sha
    for n in range(MAX_CONTEXTS):
        forge.set_status(head, context=f"c{n}", state="success")
    forge.set_status(head, context="c0", state="failure")  # replacing one is always possible
    with pytest.raises(ForgeError, match=f"already has {MAX_CONTEXTS} status contexts"):
        forge.set_status(head, context="one-more", state="success")
    record = t.bare / "leviathan" / "statuses" / f"{head}.json"
    record.unlink()
    os.symlink("/etc/passwd", record)
    with pytest.raises(ForgeError, match="symbolic link"):
        forge.ci_status(head)


def test_an_incomplete_read_is_unknown_unless_something_failed_and_the_report_is_redacted_and_bounded():
    passed = CiCheck(name="a", state="success")
    assert ci_status("s", [passed], complete=False).state == "unknown"
    failed = CiCheck(name="b", state="failure", summary="token ghp_" + "Ab1" * 12 + "\n" + "x" * 1900)
    status = ci_status("s", [passed, failed], complete=False)
    assert status.state == "failure"
    report = failure_report(status)
    assert "[REDACTED:github_token]" in report and "ghp_" not in report
    many = ci_status("s", [failed.model_copy(update={"name": f"n{i}"}) for i in range(10)])
    assert len(failure_report(many).encode()) <= 8192 and failure_report(many).endswith("[... feedback truncated]")
