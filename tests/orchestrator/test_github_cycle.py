"""Full cycles through real Airflow (``dag.test()``) against the fake GitHub, the real GithubHook and git over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import evidence_record, human_push, run_cycle, xcom
from tests.fake_github import FakeGithub, connection_env

pytestmark = pytest.mark.usefixtures("airflow_db")

TOKEN = "ghp_CycleSecret9876543210zyxwvuZYXWVU"
SECRETS = [TOKEN, base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()]
TASKS = [names.TASK_PLAN, names.TASK_RUN_WORKER, names.TASK_OPEN_PULL_REQUEST, names.TASK_RECORD_EVIDENCE]


@pytest.fixture
def github_target(tmp_path, targets_dir, monkeypatch, request):
    """A demo target whose remote is the fake GitHub (``forge: github``, connection ``github_test``).

    Each test gets a target id of its own: the session's metadata DB keeps every target's evidence, and
    one test's attempts and PRs (the hourly PR limit) must not decide another's cycles."""
    target_id = "gh_" + hashlib.sha256(request.node.name.encode()).hexdigest()[:10]
    with FakeGithub(TOKEN) as fake:
        target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
        bare = tmp_path / "repos" / f"{target_id}.git"
        fake.add_repo("acme/widgets", bare)
        url = fake.repo_url("acme/widgets")
        text = target_file.read_text().replace(f"target_repo_url: {bare}", f"target_repo_url: {url}")
        target_file.write_text(text.replace(
            "forge: local", "forge: github\nforge_conn_id: github_test\npr_draft: true\npr_labels: [leviathan, docs]"
            "\npr_reviewers: [octocat]\npr_assignees: [hubot]"))
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(fake))
        yield fake, target_file, bare
        assert fake.errors == [], "requests or responses outside the GitHub description"


def _all_xcoms(dag_run) -> str:
    keys = [names.XCOM_RETURN_VALUE, names.XCOM_READ, names.XCOM_GUARDRAILS, names.XCOM_RECORD,
            names.XCOM_REJECTION]
    return json.dumps([xcom(dag_run, t, k) for t in TASKS for k in keys], default=str)


def _logs(capfd, caplog) -> str:
    """Task logs: ``dag.test()`` writes them to the console or, once pytest hooked logging, to its capture;
    plus any log files under $AIRFLOW_HOME/logs."""
    captured = capfd.readouterr()
    root = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    files = [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()]
    return "\n".join([captured.out, captured.err, caplog.text, *files])


def test_cycle_opens_one_pr_then_idles_on_304s_and_leaks_no_token(github_target, capfd, caplog):
    fake, target_file, bare = github_target
    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    record = evidence_record(dag_run)
    assert record["stopped_reason"] == "pr_opened" and record["attempt"]["pr_number"] == 1
    pulls = fake.open_pulls("acme/widgets")
    assert [(p["number"], p["head"]["ref"], p["base"]["ref"]) for p in pulls] == \
        [(1, "agent/docs-quickstart/1", "main")]
    assert run_git(["--git-dir", str(bare), "rev-parse", "agent/docs-quickstart/1"]).stdout.strip() == \
        pulls[0]["head"]["sha"]
    assert record["attempt"]["pr_url"] == f"{fake.url}/acme/widgets/pull/1"
    # Draft and labels come from the target file (pr_draft, pr_labels).
    assert pulls[0]["draft"] is True and fake.repos["acme/widgets"].labels[1] == ["leviathan", "docs"]
    # pr_reviewers and pr_assignees: requested and assigned on the new PR.
    assert fake.repos["acme/widgets"].reviewers[1] == ["octocat"]
    assert fake.repos["acme/widgets"].assignees[1] == ["hubot"]
    assert [path for _, path, _ in fake.api_calls("POST")] == [  # one PR, then its labels and people
        "/repos/acme/widgets/pulls", "/repos/acme/widgets/issues/1/labels",
        "/repos/acme/widgets/pulls/1/requested_reviewers", "/repos/acme/widgets/issues/1/assignees"]

    # The open-PR list changed since cycle 1 polled it (one 200); after that, cycles are idle: only 304s.
    for _ in range(2):
        before, budget, git_before = len(fake.requests), fake.rate_remaining, len(fake.git_requests)
        dag_run2, states2 = run_cycle(target_file)
        record2 = evidence_record(dag_run2)
        assert record2["reasons"] == ["open_pr_limit"] and states2[names.TASK_RUN_WORKER] == "skipped"
    idle = fake.requests[before:]
    assert idle and {(method, status) for method, _, status, _ in idle} == {("GET", 304)}, idle
    assert fake.rate_remaining == budget and len(fake.api_calls("POST")) == 4  # nothing new since cycle 1
    idle_git = fake.git_requests[git_before:]
    assert {path.rsplit("/", 1)[-1] for path, _, _ in idle_git} == {"refs", "git-upload-pack"}, idle_git
    assert sum(sent + received for _, sent, received in idle_git) < 4096, idle_git  # refs only, no pack

    # The token appears nowhere: task logs, XComs, evidence, PR bodies, URLs.
    haystacks = {"logs": _logs(capfd, caplog), "xcoms": _all_xcoms(dag_run) + _all_xcoms(dag_run2),
                 "evidence": json.dumps([record, record2]),
                 "pr bodies": json.dumps([p["body"] for p in fake.repos["acme/widgets"].pulls]),
                 "target file": target_file.read_text()}
    assert "pull request #1" in haystacks["logs"]  # the logs really are there
    for name, text in haystacks.items():
        for secret in SECRETS:
            assert secret not in text, f"token leaked into {name}"


def test_forge_errors_fail_the_cycle_closed_with_a_clear_reason(github_target, capfd, caplog):
    fake, target_file, _ = github_target
    fake.repos["acme/widgets"].archived = True
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert record["decision"] == "error" or "forge_state_unknown" in record["reasons"], record
    assert "forge_state_unknown" in record["reasons"]
    assert states[names.TASK_RUN_WORKER] == "skipped" and fake.api_calls("POST") == []
    assert "repository acme/widgets is archived" in _logs(capfd, caplog)

    fake.repos["acme/widgets"].archived = False
    fake.token = "ghp_rotated_elsewhere"  # the connection's token is now wrong
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert record["reasons"] == ["repo_unreachable"], record  # git's 401: the credentials were refused
    assert "acme/widgets.git" in record["stopped_detail"] and TOKEN not in record["stopped_detail"]
    assert states[names.TASK_RUN_WORKER] == "skipped" and fake.api_calls("POST") == []


def test_merged_branches_are_deleted_unless_a_human_pushed_to_them(github_target, tmp_path):
    fake, target_file, bare = github_target
    run_cycle(target_file)  # PR #1 on agent/docs-quickstart/1
    edited = human_push(bare, tmp_path / "reviewer", "agent/docs-quickstart/1", "docs/extra.md", "mine\n")
    fake.human_merge("acme/widgets", 1)
    dag_run, _ = run_cycle(target_file)  # syncs #1, opens #2
    record = evidence_record(dag_run)
    assert [(c["number"], c["state"], c["branch_deleted"], c["branch_kept"]) for c in record["pr_sync"]] == [
        (1, "merged", False, "human_edited")]
    assert run_git(["--git-dir", str(bare), "rev-parse", "agent/docs-quickstart/1"]).stdout.strip() == edited
    assert record["attempt"]["pr_number"] == 2

    fake.human_merge("acme/widgets", 2)
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    branch = record["pr_sync"][0]["branch"]
    assert [(c["number"], c["state"], c["branch_deleted"]) for c in record["pr_sync"]] == [(2, "merged", True)]
    assert fake.api_calls("DELETE") == []  # the delete is a git push with a lease, never a REST DELETE
    assert branch not in run_git(["--git-dir", str(bare), "branch", "--list"]).stdout


def test_an_open_pr_a_human_pushed_to_is_commented_on_once_and_left_alone(github_target, tmp_path):
    from leviathan_lib.cycle.lifecycle import HUMAN_EDITED_COMMENT

    fake, target_file, bare = github_target
    run_cycle(target_file)  # PR #1
    edited = human_push(bare, tmp_path / "reviewer", "agent/docs-quickstart/1", "docs/extra.md", "mine\n")
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert [(a["kind"], a["number"], a["head_sha"], a["commented"]) for a in record["lifecycle"]] == [
        ("human_edited", 1, edited, True)]
    assert record["ledger"]["open_prs"][0]["human_edited"] is True
    assert fake.repos["acme/widgets"].comments[1] == [HUMAN_EDITED_COMMENT]
    dag_run, _ = run_cycle(target_file)  # remembered: no second comment, the branch untouched
    assert evidence_record(dag_run)["lifecycle"] == []
    assert fake.repos["acme/widgets"].comments[1] == [HUMAN_EDITED_COMMENT]
    assert run_git(["--git-dir", str(bare), "rev-parse", "agent/docs-quickstart/1"]).stdout.strip() == edited
    assert [p["state"] for p in fake.repos["acme/widgets"].pulls] == ["open"]
