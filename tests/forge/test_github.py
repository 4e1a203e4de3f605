"""The GitHub forge against the spec-validating fake GitHub: real HTTP, real GithubHook, real git push."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from leviathan_lib.forge import ForgeConflict, ForgeError, PullRequestNotFound, open_forge
from leviathan_lib.forge.github import GithubForge, RetryPolicy
from leviathan_lib.git.runner import GitError, init_bare, run_git
from tests.fake_github import FakeGithub, connection_env

TOKEN = "ghp_FakeToken0123456789abcdefABCDEF01"
REPO = "acme/widgets"


class Setup:
    def __init__(self, tmp_path: Path, fake: FakeGithub, monkeypatch):
        self.tmp, self.fake, self.monkeypatch = tmp_path, fake, monkeypatch
        self.bare = init_bare(tmp_path / "widgets.git")
        self.work = tmp_path / "work"
        self.work.mkdir()
        run_git(["init", "--quiet", "-b", "main"], cwd=self.work)
        self.commit("README.md", "hello\n")
        run_git(["push", "--quiet", str(self.bare), "main"], cwd=self.work)
        self.repo = fake.add_repo(REPO, self.bare)
        self.url = fake.repo_url(REPO)
        self.sleeps: list[float] = []
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(fake))

    def commit(self, path: str, text: str) -> None:
        (self.work / path).write_text(text)
        run_git(["add", "-A"], cwd=self.work)
        run_git(["commit", "--quiet", "-m", f"edit {path}"], cwd=self.work)

    def forge(self, **retry) -> GithubForge:
        policy = RetryPolicy(**{"backoff": 0.01, "read_timeout": 0.5, "secondary_wait": 5.0, **retry})
        return GithubForge(self.url, "github_test", retry=policy, sleep=self.sleeps.append,
                           cache_dir=self.tmp / "etags")

    def push_branch(self, forge: GithubForge, branch: str) -> None:
        run_git(["checkout", "--quiet", "-B", branch, "main"], cwd=self.work)
        self.commit(f"{branch.replace('/', '_')}.md", branch)
        run_git(["push", "--quiet", forge.repo_url, f"HEAD:refs/heads/{branch}"], cwd=self.work,
                env=forge.git_push_env())
        run_git(["checkout", "--quiet", "main"], cwd=self.work)


@pytest.fixture
def gh(tmp_path, monkeypatch):
    with FakeGithub(TOKEN) as fake:
        yield Setup(tmp_path, fake, monkeypatch)
        assert fake.errors == [], "requests or responses outside the GitHub description"


def test_lifecycle_and_the_token_stays_out_of_urls_and_argv(gh):
    forge = gh.forge(attempts=1)
    assert forge.default_branch() == "main" and forge.list_open_prs() == []
    env = forge.git_push_env()
    assert env["GIT_CONFIG_KEY_0"] == f"http.{gh.fake.url}/.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert TOKEN not in " ".join(env.values()) and TOKEN not in forge.repo_url
    gh.push_branch(forge, "agent/t1/1")
    assert gh.fake.git_requests and all(TOKEN not in path for path, _, _ in gh.fake.git_requests)

    pr = forge.create_pr(head="agent/t1/1", base="main", title="[leviathan] t1", body="why")
    assert (pr.number, pr.state, pr.head, pr.base, pr.body) == (1, "open", "agent/t1/1", "main", "why")
    assert pr.head_sha == run_git(["--git-dir", str(gh.bare), "rev-parse", "agent/t1/1"]).stdout.strip()
    assert [p.number for p in gh.forge().list_open_prs()] == [1]
    assert gh.forge().list_open_prs(head_prefix="agent/other/") == []
    assert gh.forge().find_pr_by_head("agent/t1/1").number == 1 and gh.forge().find_pr_by_head("agent/x") is None
    with pytest.raises(ForgeError, match="second pull request"):  # at most one creation per cycle
        forge.create_pr(head="agent/t1/1", base="main", title="again", body="")
    with pytest.raises(ForgeConflict, match="already has an open pull request"):
        gh.forge().create_pr(head="agent/t1/1", base="main", title="again", body="")

    forge = gh.forge()
    deletes = len(gh.fake.git_requests)
    forge.delete_branch("agent/t1/1", lease=pr.head_sha)  # a conditional git push, never a REST DELETE
    forge.delete_branch("agent/t1/1", lease=pr.head_sha)  # absent is fine
    assert run_git(["--git-dir", str(gh.bare), "branch", "--list", "agent/*"]).stdout == ""
    assert len(gh.fake.git_requests) > deletes
    assert gh.fake.api_calls("DELETE") == []
    with pytest.raises(ValueError):
        forge.delete_branch("main", lease=pr.head_sha)
    with pytest.raises(PullRequestNotFound):
        forge.get_pr(99)


def test_draft_and_labels(gh):
    forge = GithubForge(gh.url, "github_test", draft=True, labels=("leviathan",), cache_dir=gh.tmp / "etags")
    gh.push_branch(forge, "agent/t1/1")
    pr = forge.create_pr(head="agent/t1/1", base="main", title="t", body="b")
    assert gh.fake.open_pulls(REPO)[0]["draft"] is True and gh.repo.labels[pr.number] == ["leviathan"]


def test_reviewers_and_assignees_are_handed_the_new_pr(gh):
    forge = open_forge("github", gh.url, "github_test", reviewers=("octocat",), assignees=("hubot",))
    gh.push_branch(forge, "agent/t1/1")
    pr = forge.create_pr(head="agent/t1/1", base="main", title="t", body="b")
    assert gh.repo.reviewers[pr.number] == ["octocat"] and gh.repo.assignees[pr.number] == ["hubot"]


def test_comments_and_branch_tips(gh):
    forge = gh.forge()
    gh.push_branch(forge, "agent/t1/1")
    pr = forge.create_pr(head="agent/t1/1", base="main", title="t", body="b")
    forge.comment(pr.number, "Leviathan says hello once.")
    assert gh.repo.comments[pr.number] == ["Leviathan says hello once."]
    assert forge.branch_sha("agent/t1/1") == pr.head_sha and forge.branch_sha("agent/none/1") is None
    with pytest.raises(ForgeError, match="404"):
        forge.comment(99, "nobody reads this")


def test_writes_are_at_least_a_second_apart(gh):
    now = [1000.0]

    def sleep(seconds: float) -> None:
        gh.sleeps.append(seconds)
        now[0] += seconds

    forge = GithubForge(gh.url, "github_test", labels=("leviathan",), reviewers=("octocat",), assignees=("hubot",),
                        sleep=sleep, clock=lambda: now[0], cache_dir=gh.tmp / "etags")
    gh.push_branch(forge, "agent/t1/1")
    forge.create_pr(head="agent/t1/1", base="main", title="t", body="b")
    # Four writes (the PR, labels, reviewers, assignees) on a clock that moves only while sleeping.
    assert [m for m, _, _ in gh.fake.api_calls() if m != "GET"] == ["POST"] * 4
    assert gh.sleeps == [1.0, 1.0, 1.0]


def test_a_reviewer_the_forge_refuses_leaves_the_pr_standing(gh, caplog):
    forge = open_forge("github", gh.url, "github_test", reviewers=("stranger",))
    gh.push_branch(forge, "agent/t1/1")
    pr = forge.create_pr(head="agent/t1/1", base="main", title="t", body="b")
    assert pr.state == "open" and gh.repo.reviewers.get(pr.number) is None
    assert "pr_reviewers not applied" in caplog.text and "422" in caplog.text
    assert [p["number"] for p in gh.fake.open_pulls(REPO)] == [1]


def test_idle_poll_is_conditional_and_costs_no_budget(gh):
    gh.forge().list_open_prs()
    budget = gh.fake.rate_remaining
    idle = gh.forge()  # a new task process: the ETags come from the state dir
    assert idle.list_open_prs() == []
    assert [status for _, _, status in idle.calls] == [304, 304]
    assert gh.fake.rate_remaining == budget
    assert all("if-none-match" in headers for _, _, _, headers in gh.fake.requests[-2:])


def test_human_merge_and_close_are_seen(gh):
    forge = gh.forge()
    for n in (1, 2):
        gh.push_branch(forge, f"agent/t{n}/1")
        gh.forge().create_pr(head=f"agent/t{n}/1", base="main", title=f"t{n}", body="")
    gh.fake.human_merge(REPO, 1)
    gh.fake.human_close(REPO, 2)
    assert gh.forge().list_open_prs() == []
    merged, closed = gh.forge().find_pr_by_head("agent/t1/1"), gh.forge().get_pr(2)
    assert merged.state == "merged" and merged.merge_sha and closed.state == "closed"


def test_server_errors_are_retried_a_bounded_number_of_times(gh):
    gh.fake.inject("GET", r"/repos/acme/widgets/pulls", 502, body={"message": "Bad gateway"}, times=2)
    assert gh.forge().list_open_prs() == []
    assert gh.sleeps == [0.01, 0.02]
    gh.fake.inject("GET", r"/repos/acme/widgets/pulls", 503, body={"message": "Unavailable"}, times=10)
    with pytest.raises(ForgeError, match=r"server error 503 after 4 attempt\(s\).*forge state unknown"):
        gh.forge().list_open_prs()
    assert len([c for c in gh.fake.api_calls("GET") if c[2] == 503]) == 4


def test_timeouts_are_retried_then_fail_closed(gh):
    gh.fake.inject("GET", r"/repos/acme/widgets", None, delay=1.5, times=1)
    assert gh.forge().default_branch() == "main"
    gh.fake.inject("GET", r"/repos/acme/widgets", None, delay=1.5, times=2)
    with pytest.raises(ForgeError, match="no answer .*Timeout.* after 2 attempt"):
        gh.forge(attempts=2).default_branch()


def test_a_create_that_timed_out_is_not_repeated(gh):
    forge = gh.forge()
    gh.push_branch(forge, "agent/t1/1")
    gh.fake.inject("POST", r"/repos/acme/widgets/pulls", None, delay=1.5)  # created, but the answer is late
    pr = forge.create_pr(head="agent/t1/1", base="main", title="t", body="")
    assert pr.number == 1 and len(gh.fake.open_pulls(REPO)) == 1
    assert len(gh.fake.api_calls("POST")) == 1


def test_a_create_that_failed_is_retried_after_checking(gh):
    forge = gh.forge()
    gh.push_branch(forge, "agent/t1/1")
    gh.fake.inject("POST", r"/repos/acme/widgets/pulls", 500, body={"message": "Server Error"})
    assert forge.create_pr(head="agent/t1/1", base="main", title="t", body="").number == 1
    assert len(gh.fake.open_pulls(REPO)) == 1 and len(gh.fake.api_calls("POST")) == 2


def test_secondary_rate_limits_honour_retry_after_within_a_budget(gh):
    gh.fake.inject("GET", r"/repos/acme/widgets/pulls", 403, times=1, headers={"Retry-After": "7"},
                   body={"message": "You have exceeded a secondary rate limit."})
    gh.fake.inject("GET", r"/repos/acme/widgets/pulls", 429, times=1, body={"message": "Too many requests"})
    assert gh.forge().list_open_prs() == []
    assert gh.sleeps == [7.0, 10.0]  # Retry-After, then secondary_wait * 2 for the second try
    gh.sleeps.clear()
    gh.fake.inject("GET", r"/repos/acme/widgets/pulls", 403, headers={"Retry-After": "600"},
                   body={"message": "You have exceeded a secondary rate limit."})
    with pytest.raises(ForgeError, match="rate limited .*forge state unknown"):
        gh.forge().list_open_prs()
    # A new client of the account first waited what the account still owed (7 + 10 s, on the real clock).
    assert len(gh.sleeps) == 1 and 15 < gh.sleeps[0] <= 17


def test_primary_rate_limit_waits_for_the_reset_or_fails_closed(gh):
    gh.fake.rate_remaining, gh.fake.rate_reset = 0, int(time.time()) + 20

    def wait(seconds: float) -> None:
        gh.sleeps.append(seconds)
        gh.fake.rate_remaining = 5000  # the window resets while we sleep

    forge = GithubForge(gh.url, "github_test", retry=RetryPolicy(backoff=0.01), sleep=wait,
                        cache_dir=gh.tmp / "etags")
    assert forge.default_branch() == "main"
    assert len(gh.sleeps) == 1 and 15 <= gh.sleeps[0] <= 22
    gh.fake.rate_remaining, gh.fake.rate_reset = 0, int(time.time()) + 3600
    with pytest.raises(ForgeError, match="rate limited .*API rate limit exceeded"):
        gh.forge().list_open_prs()


@pytest.mark.parametrize("case", ["bad_token", "read_only_token", "no_repo", "archived"])
def test_bad_credentials_and_repositories_fail_with_a_clear_message(gh, case):
    forge = gh.forge()
    gh.push_branch(forge, "agent/t1/1")
    expected = {
        "bad_token": r"401 Bad credentials: the token of connection 'github_test' is wrong, expired or revoked",
        "read_only_token": r"403 .*lacks 'Pull requests: write' on acme/widgets",
        "no_repo": r"404 Not Found: repository acme/widgets does not exist or the token .* cannot see it",
        "archived": r"repository acme/widgets is archived",
    }[case]
    if case == "bad_token":
        gh.monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(gh.fake, "ghp_wrong"))
    elif case == "read_only_token":
        gh.fake.permissions["pull_requests"] = "read"
    elif case == "no_repo":
        del gh.fake.repos[REPO]
    else:
        gh.repo.archived = True
    forge = gh.forge()
    action = forge.list_open_prs if case != "read_only_token" else (
        lambda: forge.create_pr(head="agent/t1/1", base="main", title="t", body=""))
    with pytest.raises(ForgeError, match=expected) as info:
        action()
    assert TOKEN not in str(info.value) and gh.fake.open_pulls(REPO) == [] if REPO in gh.fake.repos else True
    if case == "archived":
        with pytest.raises(GitError, match="403"):
            gh.push_branch(forge, "agent/t2/1")


def test_git_needs_the_header_and_urls_with_credentials_are_refused(gh, monkeypatch):
    with pytest.raises(GitError):
        run_git(["ls-remote", gh.url])  # no header, no prompt: refused
    assert run_git(["ls-remote", gh.url, "refs/heads/main"], env=gh.forge().git_push_env()).stdout
    with pytest.raises(ForgeError, match="must not contain credentials"):
        open_forge("github", gh.url.replace("http://", f"http://x:{TOKEN}@"), "github_test")
    with pytest.raises(ForgeError, match="cannot use GitHub connection 'nope'"):
        open_forge("github", gh.url, "nope")
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DEFAULT", connection_env(gh.fake))
    assert open_forge("github", gh.url).conn_id == "github_default"


def test_the_fake_rejects_what_the_description_does_not_allow(gh):
    resp = requests.post(f"{gh.fake.url}/repos/acme/widgets/pulls", json={"title": 5, "head": "x"},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert resp.status_code == 422
    requests.get(f"{gh.fake.url}/repos/acme/widgets/collaborators",
                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert any("request POST /repos/acme/widgets/pulls" in e for e in gh.fake.errors)
    assert any("collaborators" in e for e in gh.fake.errors)
    gh.fake.errors.clear()


def test_a_retry_after_one_target_got_paces_every_target_of_the_account(gh):
    """Two targets (repositories) behind one connection share GitHub's secondary limits: one target's
    Retry-After makes the other wait, and the account's writes stay under ``writes_per_hour``."""
    now = [1000.0]

    def sleep(seconds: float) -> None:
        gh.sleeps.append(seconds)
        now[0] += seconds

    def forge(repo: str, **retry) -> GithubForge:
        return GithubForge(gh.fake.repo_url(repo), "github_test", retry=RetryPolicy(backoff=0.01, **retry),
                           sleep=sleep, clock=lambda: now[0], cache_dir=gh.tmp / "etags")

    gadgets_bare = init_bare(gh.tmp / "gadgets.git")
    run_git(["push", "--quiet", str(gadgets_bare), "main"], cwd=gh.work)
    gadgets_repo = gh.fake.add_repo("acme/gadgets", gadgets_bare)
    widgets, gadgets = forge(REPO, attempts=1), forge("acme/gadgets")
    gh.push_branch(widgets, "agent/t1/1")
    gh.push_branch(gadgets, "agent/t2/1")
    gh.fake.inject("POST", r"/repos/acme/widgets/pulls$", 403, times=1, headers={"Retry-After": "30"},
                   body={"message": "You have exceeded a secondary rate limit."})
    with pytest.raises(ForgeError, match="rate limited"):
        widgets.create_pr(head="agent/t1/1", base="main", title="t1", body="b")
    assert gh.sleeps == []  # no retry left for that target: it recorded the wait for the account
    pr = gadgets.create_pr(head="agent/t2/1", base="main", title="t2", body="b")
    assert gh.sleeps == [30.0]  # the other target waited as GitHub told the account, then wrote
    assert [(m, p) for m, p, _ in gh.fake.api_calls() if m == "POST"] == [
        ("POST", "/repos/acme/widgets/pulls"), ("POST", "/repos/acme/gadgets/pulls")]
    # Two writes of the account this hour: with writes_per_hour 2 a third would wait an hour, so it fails closed.
    with pytest.raises(ForgeError, match=r"may not send this before 01:16:40 UTC \(.*write pacing: 2 an hour\)"):
        forge("acme/gadgets", writes_per_hour=2).comment(pr.number, "one write too many this hour")
    assert gadgets_repo.comments.get(pr.number) is None
