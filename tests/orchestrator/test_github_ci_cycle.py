"""CI in real cycles against the spec-validated fake GitHub: ``checks_pass`` waits through an unknown state
(a 5xx), opens on a green check run, an unchanged head's CI costs no rate limit, and a red check run gets
its fix attempt with the run's output as redacted, untrusted data."""

from __future__ import annotations

import pytest

from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import evidence_record, run_cycle
from tests.orchestrator.test_github_cycle import github_target  # noqa: F401 — the fixture

pytestmark = pytest.mark.usefixtures("airflow_db")

REPO = "acme/widgets"
BRANCH = "agent/docs-quickstart/1"
ERROR = {"message": "Server Error", "documentation_url": "https://docs.github.com/rest"}


def _cycle(target_file) -> dict:
    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    return evidence_record(dag_run)


def _kinds(record) -> list[str]:
    return [a["kind"] for a in record["lifecycle"]]


def test_checks_pass_waits_on_unknown_opens_on_green_then_fixes_red(github_target):  # noqa: F811
    fake, target_file, bare = github_target
    target_file.write_text(target_file.read_text() + "pr_creation: checks_pass\n")
    record = _cycle(target_file)
    assert record["stopped_reason"] == "pushed_awaiting_ci" and fake.open_pulls(REPO) == []
    head = record["attempt"]["pr_head_sha"]

    # GitHub cannot say: unknown is recorded, nothing opens, the cycle itself is fine.
    fake.inject("GET", rf"/repos/{REPO}/commits/{head}/check-runs", 502, body=ERROR, times=10)
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_unknown"] and "forge_error" in record["lifecycle"][0]["detail"]
    assert fake.open_pulls(REPO) == [] and record["reasons"] == ["open_pr_limit"]
    fake.faults.clear()

    fake.check_run(REPO, head, "build", conclusion="success", title="all good")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_passed", "pr_created"]
    [pull] = fake.open_pulls(REPO)
    assert (pull["number"], pull["head"]["ref"], pull["draft"]) == (1, BRANCH, True)
    assert fake.repos[REPO].labels[1] == ["leviathan", "docs"]  # the target's PR options apply here too

    # The next cycles read CI on the unchanged head with conditional requests: 304s, no rate limit spent.
    _cycle(target_file)
    before, budget = len(fake.requests), fake.rate_remaining
    record = _cycle(target_file)
    ci_reads = [(p, s) for m, p, s, _ in fake.requests[before:] if "/commits/" in p]
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in ci_reads) == ["check-runs", "status"]
    assert {s for _, s in ci_reads} == {304} and fake.rate_remaining == budget and _kinds(record) == []

    secret = "ghp_" + "Gh5" * 12
    fake.check_run(REPO, head, "build", conclusion="failure", title="<script>alert(1)</script>",
                   summary=f"@octocat leaked {secret}")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_failed"]
    attempt = record["attempt"]
    assert (attempt["continued_pr"], attempt["continue_why"], record["stopped_reason"]) == (1, "ci_failed",
                                                                                            "pr_updated")
    new_head = run_git(["--git-dir", str(bare), "rev-parse", BRANCH]).stdout.strip()
    page = run_git(["--git-dir", str(bare), "show", f"{new_head}:docs/quickstart.md"]).stdout
    assert "> <script>alert(1)</script>" in page and "[REDACTED:github_token]" in page and secret not in page
    assert secret not in str(record)
