"""The GitHub forge's issue calls (the dashboard) against the spec-validating fake GitHub."""

from __future__ import annotations

import pytest

from leviathan_lib.core.names import DASHBOARD_LABEL
from leviathan_lib.forge import ForgeError, IssueNotFound
from tests.forge.test_github import REPO, gh  # noqa: F401 — the fixture

TITLE = "Leviathan dashboard: t1"


def test_issue_lifecycle_through_the_rest_api(gh):  # noqa: F811
    forge = gh.forge()
    issue = forge.create_issue(title=TITLE, body="one", label=DASHBOARD_LABEL)
    assert (issue.number, issue.state, issue.labels) == (1, "open", (DASHBOARD_LABEL,))
    assert issue.url.endswith(f"/{REPO}/issues/1")
    assert forge.get_issue(1) == issue
    assert forge.find_issue(title=TITLE, label=DASHBOARD_LABEL) == issue
    assert forge.find_issue(title="other", label=DASHBOARD_LABEL) is None
    assert forge.update_issue(1, title=TITLE, body="two").body == "two"
    gh.fake.human_close_issue(REPO, 1)
    assert forge.get_issue(1).state == "closed" and forge.find_issue(title=TITLE, label=DASHBOARD_LABEL) is None
    gh.fake.human_delete_issue(REPO, 1)
    with pytest.raises(IssueNotFound, match="410"):
        forge.get_issue(1)
    with pytest.raises(IssueNotFound, match="404"):
        forge.update_issue(7, title=TITLE, body="x")
    writes = [m for m, _, _ in gh.fake.api_calls() if m != "GET"]
    assert writes == ["POST", "PATCH", "PATCH"]
    assert len(gh.sleeps) == 2 and all(s > 0 for s in gh.sleeps)  # each later write was spaced from the one before


def test_a_create_whose_answer_is_lost_is_found_not_repeated(gh):  # noqa: F811
    """The POST reached GitHub but the answer timed out: the issue it made is taken, no second POST."""
    gh.fake.inject("POST", f"/repos/{REPO}/issues", None, delay=1.0)  # answered after the 0.5 s read timeout
    issue = gh.forge().create_issue(title=TITLE, body="one", label=DASHBOARD_LABEL)
    assert issue.number == 1 and len(gh.repo.issues) == 1
    assert [m for m, _, _ in gh.fake.api_calls() if m == "POST"] == ["POST"]


def test_a_create_refused_by_a_5xx_is_an_error_not_a_retry(gh):  # noqa: F811
    error = {"message": "Server Error", "documentation_url": "https://docs.github.com/rest", "status": "502"}
    gh.fake.inject("POST", f"/repos/{REPO}/issues", 502, body=error)
    with pytest.raises(ForgeError, match="502.*outcome unknown.*looks again") as info:
        gh.forge().create_issue(title=TITLE, body="one", label=DASHBOARD_LABEL)
    assert info.value.code == "forge_error" and gh.repo.issues == []
    assert [m for m, _, _ in gh.fake.api_calls() if m == "POST"] == ["POST"]


def test_missing_issue_permission_names_it(gh):  # noqa: F811
    gh.fake.permissions["issues"] = "read"
    with pytest.raises(ForgeError, match="lacks 'Issues: write'"):
        gh.forge().create_issue(title=TITLE, body="one", label=DASHBOARD_LABEL)
