"""CI on a GitHub commit against the spec-validating fake GitHub: combined statuses plus check runs, read
with conditional requests (an unchanged head costs no rate limit), and unknown when GitHub cannot say."""

from __future__ import annotations

import pytest

from leviathan_lib.core.ci import failure_report
from leviathan_lib.forge import ForgeError
from leviathan_lib.forge.github.ci import _run_state
from leviathan_lib.git.runner import run_git
from tests.forge.test_github import REPO, gh  # noqa: F401 — the fixture

ERROR = {"message": "Server Error", "documentation_url": "https://docs.github.com/rest"}


def _head(gh) -> str:  # noqa: F811
    return run_git(["--git-dir", str(gh.bare), "rev-parse", "main"]).stdout.strip()


def test_statuses_and_check_runs_combine_into_one_state(gh):  # noqa: F811
    forge, sha, fake = gh.forge(), _head(gh), gh.fake
    assert forge.ci_status(sha).state == "none"  # GitHub's own combined state says "pending" here
    fake.ci_status(REPO, sha, "ci/docs", "pending")
    assert gh.forge().ci_status(sha).state == "pending"
    fake.check_run(REPO, sha, "build", conclusion="neutral")
    fake.check_run(REPO, sha, "lint", conclusion="skipped")
    fake.ci_status(REPO, sha, "ci/docs", "success", "built")
    assert gh.forge().ci_status(sha).state == "success"
    fake.ci_status(REPO, sha, "ci/docs", "error", "<b>@octocat</b> token ghp_" + "Qz7" * 12)
    fake.check_run(REPO, sha, "tests", conclusion="timed_out", title="2 failed", summary="test_a\ntest_b")
    status = gh.forge().ci_status(sha)
    assert status.state == "failure"
    assert [(c.name, c.summary) for c in status.failing] == [
        ("ci/docs", "<b>@octocat</b> token ghp_" + "Qz7" * 12), ("tests", "2 failed\ntest_a\ntest_b")]
    report = failure_report(status)
    assert "ghp_" not in report and "[REDACTED:github_token]" in report and "test_b" in report


def test_an_unchanged_head_is_answered_304_and_costs_no_rate_limit(gh):  # noqa: F811
    sha, fake = _head(gh), gh.fake
    fake.ci_status(REPO, sha, "ci/tests", "pending")
    assert gh.forge().ci_status(sha).state == "pending"
    before = fake.rate_remaining
    seen = len(fake.requests)
    assert gh.forge().ci_status(sha).state == "pending"  # a new forge (next cycle), the same ETag cache
    assert [(m, s) for m, _, s, _ in fake.requests[seen:]] == [("GET", 304), ("GET", 304)]
    assert fake.rate_remaining == before
    fake.ci_status(REPO, sha, "ci/tests", "success")  # a change is read in full
    assert gh.forge().ci_status(sha).state == "success" and fake.rate_remaining == before - 1


@pytest.mark.parametrize("fault", ["server_error", "rate_limit"])
def test_a_head_github_cannot_answer_for_is_an_error_never_success(gh, fault):  # noqa: F811
    sha, fake = _head(gh), gh.fake
    fake.ci_status(REPO, sha, "ci/tests", "success")
    path = rf"/repos/{REPO}/commits/{sha}/check-runs"
    if fault == "server_error":
        fake.inject("GET", path, 502, body=ERROR, times=10)
    else:
        fake.inject("GET", path, 403, body={**ERROR, "message": "API rate limit exceeded"}, times=10,
                    headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "4102444800"})
    with pytest.raises(ForgeError):
        gh.forge(attempts=2, max_total_sleep=1).ci_status(sha)


def test_more_checks_than_one_page_is_unknown_unless_one_failed(gh):  # noqa: F811
    sha, fake = _head(gh), gh.fake
    for n in range(101):
        fake.check_run(REPO, sha, f"shard-{n}")
    status = gh.forge().ci_status(sha)
    assert status.state == "unknown" and "more than 100" in status.detail
    fake.check_run(REPO, sha, "shard-0", conclusion="failure")
    assert gh.forge().ci_status(sha).state == "failure"


def test_a_check_run_still_running_is_pending_whatever_its_conclusion_says():
    # GitHub sends "conclusion": null while a run is not completed (the spec's enum cannot say null, so the
    # fake never sends one); an unknown conclusion is not taken for success either.
    assert _run_state({"status": "in_progress", "conclusion": None}) == "pending"
    assert _run_state({"status": "completed", "conclusion": "something_new"}) == "pending"
    assert _run_state({"status": "completed", "conclusion": "startup_failure"}) == "failure"
