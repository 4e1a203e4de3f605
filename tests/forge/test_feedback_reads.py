"""Reviews, conversation comments and permissions, read from the local forge and the spec-validated fake GitHub."""

from __future__ import annotations

import json

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.forge.base import ForgeError
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import init_bare, run_git
from tests.forge.test_github import REPO, gh  # noqa: F401 — the fixture

__all__ = ["gh"]


@pytest.fixture
def local(tmp_path):
    bare = init_bare(tmp_path / "repo.git")
    work = tmp_path / "work"
    work.mkdir()
    run_git(["init", "--quiet", "-b", "main"], cwd=work)
    (work / "README.md").write_text("hi\n")
    run_git(["add", "-A"], cwd=work)
    run_git(["commit", "--quiet", "-m", "init"], cwd=work)
    run_git(["push", "--quiet", str(bare), "main", "main:refs/heads/agent/t1/1"], cwd=work)
    forge = LocalForge(bare)
    forge.create_pr(head="agent/t1/1", base="main", title="t1", body="")
    return forge


def test_local_reviews_comments_and_permissions_are_durable_records(local, capsys):
    repo = str(local.path)
    local.comment(1, "Leviathan's own note")
    assert main(["forge", "collaborator", "--repo", repo, "alice", "write"]) == 0
    assert main(["forge", "collaborator", "--repo", repo, "bob", "read"]) == 0
    assert main(["forge", "review", "--repo", repo, "1", "--as", "alice", "--request-changes",
                 "--body", "Please rename x to y."]) == 0
    assert main(["forge", "comment", "--repo", repo, "1", "--as", "bob", "--body", "/leviathan retry"]) == 0
    reopened = LocalForge(local.path)
    [review] = reopened.list_reviews(1)
    assert (review.id, review.author, review.state, review.body) == (1, "alice", "CHANGES_REQUESTED",
                                                                      "Please rename x to y.")
    assert review.commit_sha == reopened.get_pr(1).head_sha
    assert [(c.id, c.author, c.body) for c in reopened.list_comments(1)] == [
        (1, "leviathan", "Leviathan's own note"), (2, "bob", "/leviathan retry")]
    assert (reopened.permission("alice"), reopened.permission("bob"), reopened.permission("eve")) == (
        "write", "read", "none")
    assert main(["forge", "collaborator", "--repo", repo, "bob", "none"]) == 0
    assert reopened.permission("bob") == "none"
    capsys.readouterr()
    assert main(["forge", "show", "--repo", repo, "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["reviews"][0]["author"] == "alice" and shown["comments"][1]["author"] == "bob"


def test_local_bad_input_is_one_line_and_no_record_changes(local, capsys):
    repo = str(local.path)
    assert main(["forge", "review", "--repo", repo, "1", "--as", "no body!", "--approve"]) == 2
    assert "user 'no body!': expected letters" in capsys.readouterr().err
    assert main(["forge", "review", "--repo", repo, "9", "--as", "alice", "--approve"]) == 2
    assert local.list_reviews(1) == []
    (local.path / "leviathan" / "collaborators.json").write_text('{"alice": "god"}')
    with pytest.raises(ForgeError, match="corrupt collaborators file .*expected an object of login"):
        local.permission("alice")
    local.close_pr(1)
    assert main(["forge", "review", "--repo", repo, "1", "--as", "alice", "--approve"]) == 1
    assert "only open ones can be reviewed" in capsys.readouterr().err


def test_github_reads_reviews_comments_and_permissions_from_the_spec_paths(gh):  # noqa: F811
    forge = gh.forge()
    gh.push_branch(forge, "agent/t1/1")
    pr = forge.create_pr(head="agent/t1/1", base="main", title="t1", body="")
    forge.comment(pr.number, "Leviathan's own note")
    gh.fake.human_review(REPO, pr.number, "hubot", "APPROVED", "")
    review_id = gh.fake.human_review(REPO, pr.number, "octocat", "CHANGES_REQUESTED", "Use tabs.")
    comment_id = gh.fake.human_comment(REPO, pr.number, "mallory", "/leviathan retry")
    gh.fake.repos[REPO].user_permissions["reader"] = "read"

    reviews = gh.forge().list_reviews(pr.number)
    assert [(r.author, r.state) for r in reviews] == [("hubot", "APPROVED"), ("octocat", "CHANGES_REQUESTED")]
    assert reviews[1].id == review_id and reviews[1].body == "Use tabs." and reviews[1].commit_sha == pr.head_sha
    comments = gh.forge().list_comments(pr.number)
    assert [(c.author, c.body) for c in comments] == [("leviathan[bot]", "Leviathan's own note"),
                                                      ("mallory", "/leviathan retry")]
    assert comments[1].id == comment_id
    assert [gh.forge().permission(u) for u in ("octocat", "hubot", "reader", "mallory")] == [
        "admin", "write", "read", "none"]
    paths = {p for m, p, _ in gh.fake.api_calls("GET")}
    assert {f"/repos/{REPO}/pulls/1/reviews", f"/repos/{REPO}/issues/1/comments",
            f"/repos/{REPO}/collaborators/octocat/permission"} <= paths


def test_github_permission_that_cannot_be_read_is_unknown(gh):  # noqa: F811
    gh.fake.inject("GET", rf"/repos/{REPO}/collaborators/octocat/permission", 500,
                   body={"message": "boom", "documentation_url": "https://docs.github.com/rest"}, times=10)
    assert gh.forge(attempts=2).permission("octocat") == "unknown"
