"""A fake GitHub on 127.0.0.1: the REST endpoints Leviathan uses plus git smart HTTP, checked against the spec.

Every REST request and every REST response is validated with openapi-core against GitHub's official
description (``../shared/specs/github/openapi-subset.json``); each failure is recorded in ``errors`` and
the fixture using this server asserts there are none. The only responses the description does not list
per operation are the ones GitHub documents globally (conditional requests, authentication and rate
limits, server errors): 304 must then be bodyless, and 401/403/429/5xx bodies must match the spec's own
``basic-error`` schema. Anything else undocumented is an error.

Git goes through the real ``git http-backend`` (CGI) over the bare repositories the tests create, and
requires the same token as the API, sent as HTTP Basic auth (``x-access-token:TOKEN``) — what GitHub does.
Faults are injected per request: any status and body, rate-limit headers, or a slow answer (a timeout).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared/specs/github/openapi-subset.json"
SPEC_HOST = "https://api.github.com"
#: Statuses GitHub documents for every operation (conditional requests, auth, rate limits, outages).
GLOBAL_STATUSES = {304, 401, 403, 429, 500, 502, 503, 504}

_API = None
_API_LOCK = threading.Lock()


def openapi():
    """The parsed GitHub description, loaded once; a missing file fails loudly (never a skip)."""
    global _API
    with _API_LOCK:
        if _API is None:
            from openapi_core import OpenAPI

            if not SPEC_PATH.is_file():
                raise FileNotFoundError(f"GitHub OpenAPI description missing: {SPEC_PATH}")
            _API = OpenAPI.from_file_path(str(SPEC_PATH))
        return _API


def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """An injected answer for the next ``times`` requests matching ``method`` and ``path`` (a regex)."""

    method: str
    path: str
    status: int | None = None  # None: answer normally (after ``delay``)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1


@dataclass
class Repo:
    full_name: str
    bare: Path
    default_branch: str = "main"
    archived: bool = False
    pulls: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[int, list[str]] = field(default_factory=dict)
    reviewers: dict[int, list[str]] = field(default_factory=dict)
    comments: dict[int, list[str]] = field(default_factory=dict)
    assignees: dict[int, list[str]] = field(default_factory=dict)
    #: Issues (not PRs), as stored by the issues endpoints; numbers are shared with ``pulls`` like on GitHub.
    issues: list[dict[str, Any]] = field(default_factory=list)
    #: Issue numbers an admin deleted (GitHub answers 410 Gone for them).
    deleted_issues: set[int] = field(default_factory=set)
    #: GitHub has not computed ``mergeable`` yet (it answers null meanwhile).
    mergeable_unknown: bool = False
    #: Logins that may be asked to review (GitHub answers 422 for anyone else).
    collaborators: set[str] = field(default_factory=lambda: {"octocat", "hubot"})
    #: Repository permission per login (``collaborators/{username}/permission``); anyone else is a 404.
    user_permissions: dict[str, str] = field(default_factory=lambda: {"octocat": "admin", "hubot": "write"})
    #: Reviews per PR as GitHub lists them (see :meth:`FakeGithub.human_review`).
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: Every conversation comment per PR, Leviathan's and humans', as (id, login, body, created_at).
    conversation: dict[int, list[tuple[int, str, str, str]]] = field(default_factory=dict)
    #: CI per commit: the newest commit status per context, and the check runs (see :meth:`FakeGithub.ci`).
    statuses: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Reactions per conversation comment id, as (login, content); PRs whose conversation a maintainer locked.
    reactions: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    locked: set[int] = field(default_factory=set)


class FakeGithub:
    """The server and its state; use as a context manager (or call :meth:`close`)."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        #: REST calls as (method, path, status, request headers).
        self.requests: list[tuple[str, str, int, dict[str, str]]] = []
        #: git smart-HTTP exchanges as (path, bytes in, bytes out).
        self.git_requests: list[tuple[str, int, int]] = []
        self.permissions = {"pull_requests": "write", "contents": "write", "issues": "write"}
        self.rate_limit, self.rate_remaining, self.rate_reset = 5000, 5000, int(time.time()) + 3600
        self.lock = threading.RLock()
        #: Review and comment ids, shared like GitHub's (increasing, never reused).
        self._ids = 1000
        self._examples = {k: v["value"] for k, v in _spec()["components"]["examples"].items()}
        self._basic_error = _spec()["components"]["schemas"]["basic-error"]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        openapi()

    def __enter__(self) -> FakeGithub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test controls ---------------------------------------------------------------------------------

    def add_repo(self, full_name: str, bare: Path, **kwargs: Any) -> Repo:
        repo = Repo(full_name, bare, **kwargs)
        self.repos[full_name.lower()] = repo
        return repo

    def repo_url(self, full_name: str) -> str:
        return f"{self.url}/{full_name}.git"

    def inject(self, method: str, path: str, status: int | None = None, *, body: Any = None,
               headers: dict[str, str] | None = None, delay: float = 0.0, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(method, path, status, body, dict(headers or {}), delay, times))

    def human_merge(self, full_name: str, number: int, *, into_base: bool = False) -> None:
        """A human merges PR ``number``; ``into_base`` really merges it into its base branch (a merge commit,
        git's own merge), raising AssertionError when it conflicts, as GitHub's merge button would refuse."""
        repo = self.repos[full_name.lower()]
        pr = self._pr(repo, number)
        sha = self._branch_sha(repo, pr["head"]["ref"])
        if into_base:
            git = ["git", "--git-dir", str(repo.bare)]
            base = self._branch_sha(repo, pr["base"]["ref"])
            merged = subprocess.run([*git, "merge-tree", "--write-tree", base, sha], capture_output=True, text=True,
                                    check=False)
            assert merged.returncode == 0, f"PR #{number} does not merge cleanly: {merged.stdout}"
            sha = subprocess.run([*git, "-c", "user.name=Human", "-c", "user.email=human@example.com", "commit-tree",
                                  merged.stdout.split()[0], "-p", base, "-p", sha, "-m", f"Merge #{number}"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            subprocess.run([*git, "update-ref", f"refs/heads/{pr['base']['ref']}", sha, base], check=True)
        pr.update(state="closed", merged_at=_now(), closed_at=_now(), merged=True, merge_commit_sha=sha,
                  updated_at=_now())

    def human_close(self, full_name: str, number: int) -> None:
        self._pr(self.repos[full_name.lower()], number).update(state="closed", closed_at=_now(), updated_at=_now())

    # -- issues: what humans do to them ------------------------------------------------------------------

    def issue(self, full_name: str, number: int) -> dict[str, Any]:
        return next(i for i in self.repos[full_name.lower()].issues if i["number"] == number)

    def human_edit_issue(self, full_name: str, number: int, body: str) -> None:
        self.issue(full_name, number).update(body=body, updated_at=_now())

    def human_close_issue(self, full_name: str, number: int) -> None:
        self.issue(full_name, number).update(state="closed", closed_at=_now(), updated_at=_now())

    def human_reopen_issue(self, full_name: str, number: int) -> None:
        self.issue(full_name, number).update(state="open", closed_at=None, updated_at=_now())

    def human_delete_issue(self, full_name: str, number: int) -> None:
        repo = self.repos[full_name.lower()]
        repo.issues = [i for i in repo.issues if i["number"] != number]
        repo.deleted_issues.add(number)

    def human_create_issue(self, full_name: str, title: str, body: str, labels: list[str]) -> int:
        with self.lock:
            return self._create_issue(self.repos[full_name.lower()], {"title": title, "body": body,
                                                                      "labels": labels})[1]["number"]
    def human_review(self, full_name: str, number: int, login: str, state: str, body: str) -> int:
        """A review by ``login`` of the PR's current head (``state`` as GitHub names it); returns its id."""
        repo = self.repos[full_name.lower()]
        pr = self._pr(repo, number)
        with self.lock:
            review = copy.deepcopy(self._examples["pull-request-review-items"][0])
            review_id = self._next_id()
            review.update(id=review_id, body=body, state=state, submitted_at=_now(),
                          commit_id=self._branch_sha(repo, pr["head"]["ref"]) or pr["head"]["sha"],
                          html_url=f"{self.url}/{repo.full_name}/pull/{number}#pullrequestreview-{review_id}",
                          pull_request_url=f"{self.url}/repos/{repo.full_name}/pulls/{number}")
            review["user"]["login"] = login
            repo.reviews.setdefault(number, []).append(review)
        return review_id

    def human_comment(self, full_name: str, number: int, login: str, body: str) -> int:
        """A conversation comment by ``login``; returns its id."""
        repo = self.repos[full_name.lower()]
        self._pr(repo, number)
        with self.lock:
            comment_id = self._next_id()
            repo.conversation.setdefault(number, []).append((comment_id, login, body, _now()))
        return comment_id

    def ci_status(self, full_name: str, sha: str, context: str, state: str, description: str | None = None) -> None:
        """A CI service sets commit status ``context`` on ``sha`` (``state``: error, failure, pending, success)."""
        repo = self.repos[full_name.lower()]
        with self.lock:
            status = copy.deepcopy(self._examples["combined-commit-status"]["statuses"][0])
            status.update(id=self._next_id(), state=state, context=context, description=description,
                          created_at=_now(), updated_at=_now(),
                          url=f"{self.url}/repos/{repo.full_name}/statuses/{sha}")
            repo.statuses.setdefault(sha, {})[context] = status

    def check_run(self, full_name: str, sha: str, name: str, *, status: str = "completed",
                  conclusion: str | None = "success", title: str | None = None, summary: str | None = None) -> None:
        """A GitHub App reports check run ``name`` on ``sha`` (a second report of one name replaces it)."""
        repo = self.repos[full_name.lower()]
        with self.lock:
            run = copy.deepcopy(self._examples["check-run-paginated"]["check_runs"][0])
            run.update(id=self._next_id(), head_sha=sha, name=name, status=status, conclusion=conclusion,
                       completed_at=_now() if status == "completed" else None, pull_requests=[])
            run["output"].update(title=title, summary=summary, text=None, annotations_count=0)
            runs = repo.check_runs.setdefault(sha, [])
            same = [i for i, r in enumerate(runs) if r["name"] == name]
            if same:
                runs[same[0]] = run
            else:
                runs.append(run)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def open_pulls(self, full_name: str) -> list[dict[str, Any]]:
        return [p for p in self.repos[full_name.lower()].pulls if p["state"] == "open"]

    def human_delete_branch(self, full_name: str, branch: str) -> None:
        """Someone deletes ``branch`` on GitHub; GitHub closes the open PRs whose head it was."""
        repo = self.repos[full_name.lower()]
        subprocess.run(["git", "--git-dir", str(repo.bare), "update-ref", "-d", f"refs/heads/{branch}"],
                       check=True, capture_output=True)
        for pr in repo.pulls:
            if pr["head"]["ref"] == branch and pr["state"] == "open":
                pr.update(state="closed", closed_at=_now(), updated_at=_now())

    def api_calls(self, method: str | None = None) -> list[tuple[str, str, int]]:
        return [(m, p, s) for m, p, s, _ in self.requests if method is None or m == method]

    # -- representations built from the spec's own examples -----------------------------------------------

    def _repo_json(self, repo: Repo) -> dict[str, Any]:
        data = copy.deepcopy(self._examples["full-repository-default-response"])
        owner, name = repo.full_name.split("/")
        data.update(name=name, full_name=repo.full_name, default_branch=repo.default_branch,
                    archived=repo.archived, html_url=f"{self.url}/{repo.full_name}",
                    clone_url=self.repo_url(repo.full_name), url=f"{self.url}/repos/{repo.full_name}")
        data["owner"]["login"] = owner
        data["permissions"] = {"admin": False, "maintain": False, "push": self.permissions["contents"] == "write",
                               "triage": False, "pull": True}
        for key, value in {"language": None, "license": None, "network_count": 0, "subscribers_count": 0}.items():
            data.setdefault(key, value)
        data.pop("source", None)  # the spec's example nests a repository its own schema rejects; not a fork here
        data.pop("parent", None)
        return data

    def _branch_sha(self, repo: Repo, branch: str) -> str | None:
        proc = subprocess.run(["git", "--git-dir", str(repo.bare), "rev-parse", "--verify", "--quiet",
                               f"refs/heads/{branch}"], capture_output=True, text=True, check=False)
        return proc.stdout.strip() or None

    def _pr(self, repo: Repo, number: int) -> dict[str, Any]:
        for pr in repo.pulls:
            if pr["number"] == number:
                return pr
        raise KeyError(number)

    def _pr_json(self, repo: Repo, pr: dict[str, Any], simple: bool) -> dict[str, Any]:
        data = copy.deepcopy(self._examples["pull-request-simple-items"][0] if simple
                             else self._examples["pull-request"])
        repo_json = self._repo_json(repo)
        owner = repo.full_name.split("/")[0]
        for side in ("head", "base"):
            ref = pr[side]["ref"]
            sha = pr[side]["sha"]
            if pr["state"] == "open":
                sha = self._branch_sha(repo, ref) or sha
            data[side].update(ref=ref, sha=sha, label=f"{owner}:{ref}")
            data[side]["repo"].update({k: repo_json[k] for k in ("name", "full_name", "html_url", "url")})
        for key in ("number", "title", "body", "state", "created_at", "updated_at", "closed_at", "merged_at",
                    "merge_commit_sha", "draft"):
            data[key] = pr[key]
        data["html_url"] = f"{self.url}/{repo.full_name}/pull/{pr['number']}"
        data["url"] = f"{self.url}/repos/{repo.full_name}/pulls/{pr['number']}"
        # Nobody is requested (the spec's example teams lack a required field).
        data.update(requested_teams=[], requested_reviewers=[], assignees=[], assignee=None)
        data["labels"] = [dict(self._examples["label-items"][0], name=n) for n in repo.labels.get(pr["number"], [])]
        if not simple:
            data["merged"] = pr["merged_at"] is not None
            data["mergeable"], data["mergeable_state"] = self._mergeable(repo, pr)
        return data

    def _comment_json(self, repo: Repo, number: int, comment: tuple[int, str, str, str]) -> dict[str, Any]:
        comment_id, login, text, created = comment
        data = copy.deepcopy(self._examples["issue-comment"])
        data.update(id=comment_id, body=text, created_at=created, updated_at=created,
                    issue_url=f"{self.url}/repos/{repo.full_name}/issues/{number}",
                    url=f"{self.url}/repos/{repo.full_name}/issues/comments/{comment_id}",
                    html_url=f"{self.url}/{repo.full_name}/pull/{number}#issuecomment-{comment_id}")
        data["user"]["login"] = login
        return data

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        return items[(page - 1) * per_page: page * per_page]

    def _mergeable(self, repo: Repo, pr: dict[str, Any]) -> tuple[bool | None, str]:
        """GitHub's ``mergeable``: git's own merge of the head into the base (None while "computing")."""
        base, head = self._branch_sha(repo, pr["base"]["ref"]), self._branch_sha(repo, pr["head"]["ref"])
        if pr["state"] != "open" or base is None or head is None or repo.mergeable_unknown:
            return None, "unknown"
        merged = subprocess.run(["git", "--git-dir", str(repo.bare), "merge-tree", "--write-tree",
                                 "--allow-unrelated-histories", base, head],
                                capture_output=True, check=False)
        if merged.returncode:
            return False, "dirty"
        behind = subprocess.run(["git", "--git-dir", str(repo.bare), "merge-base", "--is-ancestor", base, head],
                                capture_output=True, check=False)
        return True, "clean" if behind.returncode == 0 else "behind"

    def _error(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        body: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com/rest",
                                "status": str(status)}
        if errors:
            body["errors"] = errors
        return status, body

    # -- REST --------------------------------------------------------------------------------------------

    def handle_api(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                   body: Any) -> tuple[int, Any, dict[str, str]]:
        """Route one REST call; returns (status, JSON body or None, extra headers)."""
        auth = headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return (*self._error(401, "Bad credentials"), {})
        extra: dict[str, str] = {}
        if self.rate_remaining <= 0 and time.time() < self.rate_reset:
            status, data = self._error(403, "API rate limit exceeded for installation ID 1.")
            return status, data, extra
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", path)
        if path == "/rate_limit":
            return 200, self._examples["rate-limit-overview"], extra
        repo = self.repos.get(f"{m.group(1)}/{m.group(2)}".lower()) if m else None
        if repo is None:
            return (*self._error(404, "Not Found"), extra)
        rest = m.group(3) or ""
        write = method != "GET"
        if write and repo.archived:
            return (*self._error(403, "Repository was archived so is read-only."), extra)
        needed = "contents" if rest.startswith("/git/") else "issues" if re.fullmatch(r"/issues(/\d+)?", rest) \
            else "pull_requests"
        if write and self.permissions.get(needed) != "write":
            return (*self._error(403, "Resource not accessible by personal access token"), extra)
        with self.lock:
            return (*self._route(repo, method, rest, query, body), extra)

    def _route(self, repo: Repo, method: str, rest: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if rest == "" and method == "GET":
            return 200, self._repo_json(repo)
        if rest == "/pulls" and method == "GET":
            state = query.get("state", "open")
            pulls = [p for p in repo.pulls if state == "all" or p["state"] == state]
            if "head" in query:
                owner, _, ref = query["head"].partition(":")
                pulls = [p for p in pulls if p["head"]["ref"] == ref and owner.lower() == repo.full_name.split("/")[0]]
            pulls.sort(key=lambda p: p["number"], reverse=query.get("direction") == "desc")
            return 200, [self._pr_json(repo, p, simple=True) for p in pulls[: int(query.get("per_page", 30))]]
        if rest == "/pulls" and method == "POST":
            return self._create_pull(repo, body)
        m = re.fullmatch(r"/pulls/(\d+)", rest)
        if m and method == "GET":
            try:
                pr = self._pr(repo, int(m.group(1)))
            except KeyError:
                return self._error(404, "Not Found")
            return 200, self._pr_json(repo, pr, simple=False)
        if m and method == "PATCH":
            try:
                pr = self._pr(repo, int(m.group(1)))
            except KeyError:
                return self._error(404, "Not Found")
            if "body" in body:
                pr["body"] = body["body"]
            if body.get("state") == "closed" and pr["state"] == "open":
                pr.update(state="closed", closed_at=_now())
            pr["updated_at"] = _now()
            return 200, self._pr_json(repo, pr, simple=False)
        if rest == "/issues" and method == "GET":
            return 200, self._list_issues(repo, query)
        if rest == "/issues" and method == "POST":
            return self._create_issue(repo, body)
        m = re.fullmatch(r"/issues/(\d+)", rest)
        if m and method in ("GET", "PATCH"):
            return self._issue_call(repo, method, int(m.group(1)), body)
        m = re.fullmatch(r"/issues/(\d+)/labels", rest)
        if m and method == "POST":
            number = int(m.group(1))
            if not any(p["number"] == number for p in repo.pulls):
                return self._error(404, "Not Found")
            names = repo.labels.setdefault(number, [])
            names.extend(n for n in body["labels"] if n not in names)
            return 200, [dict(self._examples["label-items"][0], name=n) for n in names]
        m = re.fullmatch(r"/pulls/(\d+)/requested_reviewers", rest)
        if m and method == "POST":
            number = int(m.group(1))
            pr = next((p for p in repo.pulls if p["number"] == number), None)
            if pr is None:
                return self._error(404, "Not Found")
            if set(body.get("reviewers", [])) - repo.collaborators:
                return self._error(422, "Reviews may only be requested from collaborators.")
            names = repo.reviewers.setdefault(number, [])
            names.extend(n for n in body.get("reviewers", []) if n not in names)
            return 201, self._pr_json(repo, pr, simple=True)
        m = re.fullmatch(r"/issues/comments/(\d+)/reactions", rest)
        if m and method == "POST":
            return self._react(repo, int(m.group(1)), body["content"])
        m = re.fullmatch(r"/issues/(\d+)/comments", rest)
        if m and method == "POST":
            number = int(m.group(1))
            if not any(p["number"] == number for p in repo.pulls):
                return self._error(404, "Not Found")
            if number in repo.locked:
                return self._error(403, "Unable to create comment because issue is locked.")
            repo.comments.setdefault(number, []).append(body["body"])
            comment_id = self._next_id()
            repo.conversation.setdefault(number, []).append((comment_id, "leviathan[bot]", body["body"], _now()))
            data = self._comment_json(repo, number, repo.conversation[number][-1])
            return 201, data
        if m and method == "GET":
            number = int(m.group(1))
            if not any(p["number"] == number for p in repo.pulls):
                return self._error(404, "Not Found")
            items = [self._comment_json(repo, number, c) for c in repo.conversation.get(number, [])]
            return 200, self._page(items, query)
        m = re.fullmatch(r"/pulls/(\d+)/reviews", rest)
        if m and method == "GET":
            number = int(m.group(1))
            if not any(p["number"] == number for p in repo.pulls):
                return self._error(404, "Not Found")
            return 200, self._page(repo.reviews.get(number, []), query)
        m = re.fullmatch(r"/collaborators/([^/]+)/permission", rest)
        if m and method == "GET":
            login = unquote(m.group(1))
            permission = repo.user_permissions.get(login)
            if permission is None:
                return self._error(404, "Not Found")
            data = copy.deepcopy(
                self._examples["repository-collaborator-permission-response-if-user-has-admin-permissions"])
            data.update(permission=permission, role_name=permission)
            data["user"].update(login=login, role_name=permission)
            return 200, data
        m = re.fullmatch(r"/issues/(\d+)/assignees", rest)
        if m and method == "POST":
            number = int(m.group(1))
            if not any(p["number"] == number for p in repo.pulls):
                return self._error(404, "Not Found")
            names = repo.assignees.setdefault(number, [])
            # GitHub silently ignores assignees without push access.
            names.extend(n for n in body.get("assignees", []) if n not in names and n in repo.collaborators)
            data = copy.deepcopy(self._examples["issue"])
            data.update(number=number, url=f"{self.url}/repos/{repo.full_name}/issues/{number}")
            return 201, data
        m = re.fullmatch(r"/commits/([^/]+)/(status|check-runs)", rest)
        if m and method == "GET":
            return self._ci(repo, unquote(m.group(1)), m.group(2), query)
        m = re.fullmatch(r"/git/ref/heads/(.+)", rest)
        if m and method == "GET":
            branch = unquote(m.group(1))
            sha = self._branch_sha(repo, branch)
            if sha is None:
                return self._error(404, "Not Found")
            data = copy.deepcopy(self._examples["git-ref"])
            data.update(ref=f"refs/heads/{branch}", url=f"{self.url}/repos/{repo.full_name}/git/refs/heads/{branch}")
            data["object"].update(sha=sha, type="commit")
            return 200, data
        return self._error(404, "Not Found")

    def _react(self, repo: Repo, comment_id: int, content: str) -> tuple[int, Any]:
        """A reaction by Leviathan's bot user: 201 when new, 200 when it already reacted so."""
        if not any(c[0] == comment_id for cs in repo.conversation.values() for c in cs):
            return self._error(404, "Not Found")
        data = copy.deepcopy(self._examples["reaction"])
        data.update(content=content)
        data["user"]["login"] = "leviathan[bot]"
        mine = repo.reactions.setdefault(comment_id, [])
        if ("leviathan[bot]", content) in mine:
            return 200, data
        mine.append(("leviathan[bot]", content))
        return 201, data

    def _ci(self, repo: Repo, ref: str, what: str, query: dict[str, str]) -> tuple[int, Any]:
        """The combined status (GitHub's own ``state``: pending with no status at all) or the check runs."""
        sha = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else self._branch_sha(repo, ref)
        exists = sha and subprocess.run(["git", "--git-dir", str(repo.bare), "cat-file", "-e", f"{sha}^{{commit}}"],
                                        capture_output=True, check=False).returncode == 0
        if not exists:
            return self._error(404, "No commit found for SHA: " + ref)
        per_page = int(query.get("per_page", 30))
        if what == "check-runs":
            runs = repo.check_runs.get(sha, [])
            return 200, {"total_count": len(runs), "check_runs": runs[:per_page]}
        statuses = list(repo.statuses.get(sha, {}).values())
        states = {s["state"] for s in statuses}
        state = ("failure" if states & {"error", "failure"} else "pending" if "pending" in states or not states
                 else "success")
        data = copy.deepcopy(self._examples["combined-commit-status"])
        data.update(state=state, sha=sha, total_count=len(statuses), statuses=statuses[:per_page],
                    commit_url=f"{self.url}/repos/{repo.full_name}/commits/{sha}",
                    url=f"{self.url}/repos/{repo.full_name}/commits/{sha}/status")
        return 200, data

    def _issue_json(self, repo: Repo, issue: dict[str, Any]) -> dict[str, Any]:
        data = copy.deepcopy(self._examples["issue"])
        for key in ("number", "title", "body", "state", "created_at", "updated_at", "closed_at"):
            data[key] = issue[key]
        base = f"{self.url}/repos/{repo.full_name}/issues/{issue['number']}"
        data.update(url=base, html_url=f"{self.url}/{repo.full_name}/issues/{issue['number']}",
                    repository_url=f"{self.url}/repos/{repo.full_name}", comments_url=f"{base}/comments",
                    events_url=f"{base}/events", labels_url=base + "/labels{/name}", comments=0,
                    assignee=None, assignees=[], milestone=None, pull_request=None, closed_by=None)
        for key in ("pull_request", "closed_by", "state_reason"):
            data.pop(key, None)
        if issue["state"] == "closed":
            data["state_reason"] = "completed"
        data["labels"] = [dict(self._examples["label-items"][0], name=n) for n in issue["labels"]]
        return data

    def _list_issues(self, repo: Repo, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        wanted = [n for n in query.get("labels", "").split(",") if n]
        issues = [i for i in repo.issues if (state == "all" or i["state"] == state)
                  and all(n in i["labels"] for n in wanted)]
        issues.sort(key=lambda i: i["number"], reverse=query.get("direction", "desc") == "desc")
        return [self._issue_json(repo, i) for i in issues[: int(query.get("per_page", 30))]]

    def _create_issue(self, repo: Repo, body: dict[str, Any]) -> tuple[int, Any]:
        if not str(body.get("title") or "").strip():
            return self._error(422, "Validation Failed",
                               [{"resource": "Issue", "field": "title", "code": "missing_field"}])
        numbers = [p["number"] for p in repo.pulls] + [i["number"] for i in repo.issues] + list(repo.deleted_issues)
        issue = {"number": max(numbers, default=0) + 1, "title": body["title"], "body": body.get("body"),
                 "state": "open", "created_at": _now(), "updated_at": _now(), "closed_at": None,
                 "labels": [str(n) for n in body.get("labels") or []]}
        repo.issues.append(issue)
        return 201, self._issue_json(repo, issue)

    def _issue_call(self, repo: Repo, method: str, number: int, body: Any) -> tuple[int, Any]:
        if number in repo.deleted_issues:
            return self._error(410, "This issue was deleted")
        issue = next((i for i in repo.issues if i["number"] == number), None)
        if issue is None:
            return self._error(404, "Not Found")
        if method == "PATCH":
            issue.update({k: v for k, v in (body or {}).items() if k in ("title", "body", "state")},
                         updated_at=_now())
        return 200, self._issue_json(repo, issue)

    def _create_pull(self, repo: Repo, body: dict[str, Any]) -> tuple[int, Any]:
        head, base = body.get("head", ""), body.get("base", "")
        head_sha, base_sha = self._branch_sha(repo, head), self._branch_sha(repo, base)
        if head_sha is None or base_sha is None:
            field_name = "head" if head_sha is None else "base"
            return self._error(422, "Validation Failed",
                               [{"resource": "PullRequest", "field": field_name, "code": "invalid"}])
        if any(p["head"]["ref"] == head and p["state"] == "open" for p in repo.pulls):
            owner = repo.full_name.split("/")[0]
            return self._error(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom",
                                                           "message": f"A pull request already exists for "
                                                                      f"{owner}:{head}."}])
        taken = [p["number"] for p in repo.pulls] + [i["number"] for i in repo.issues] + list(repo.deleted_issues)
        number = max(taken, default=0) + 1
        pr = {"number": number, "title": body["title"], "body": body.get("body"), "state": "open",
              "created_at": _now(), "updated_at": _now(), "closed_at": None, "merged_at": None,
              "merge_commit_sha": None, "draft": bool(body.get("draft")),
              "head": {"ref": head, "sha": head_sha}, "base": {"ref": base, "sha": base_sha}}
        repo.pulls.append(pr)
        return 201, self._pr_json(repo, pr, simple=False)

    # -- validation --------------------------------------------------------------------------------------

    def validate(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                 data: bytes, status: int, out: bytes, out_headers: dict[str, str]) -> None:
        from openapi_core.templating.responses.exceptions import ResponseNotFound
        from openapi_core.testing import MockRequest, MockResponse

        kwargs: dict[str, Any] = {}
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/git/(refs|ref)/(.+)", path)
        if m:  # a ref holds slashes, which openapi-core's path templates do not match
            owner, repo = path.split("/")[2:4]
            kwargs = {"path_pattern": f"/repos/{{owner}}/{{repo}}/git/{m.group(1)}/{{ref}}",
                      "view_args": {"owner": owner, "repo": repo, "ref": unquote(m.group(2))}}
        request = MockRequest(SPEC_HOST, method.lower(), path, args={k: v[-1] for k, v in query.items()},
                              headers=headers, data=data or None,
                              content_type=headers.get("content-type", "application/json"), **kwargs)
        api = openapi()
        try:
            api.validate_request(request)
        except Exception as exc:  # noqa: BLE001 — any mismatch is a recorded test error; the fake still answers
            self.errors.append(f"request {method} {path}: {type(exc).__name__}: {_detail(exc)}")
        response = MockResponse(out, status_code=status,
                                content_type="application/json" if out else None, headers=out_headers)
        try:
            api.validate_response(request, response)
        except ResponseNotFound:
            self._validate_global(method, path, status, out)
        except Exception as exc:  # noqa: BLE001 — any mismatch is a recorded test error; the fake still answers
            self.errors.append(f"response {status} to {method} {path}: {type(exc).__name__}: {_detail(exc)}")

    def _validate_global(self, method: str, path: str, status: int, out: bytes) -> None:
        from openapi_schema_validator import OAS30Validator

        if status not in GLOBAL_STATUSES:
            self.errors.append(f"response {status} to {method} {path}: not in the GitHub description")
        elif status == 304:
            if out:
                self.errors.append(f"304 to {method} {path} has a body")
        else:
            errors = [e.message for e in OAS30Validator(self._basic_error).iter_errors(json.loads(out or b"null"))]
            if errors:
                self.errors.append(f"response {status} to {method} {path}: not a basic-error: {errors}")

    # -- git smart HTTP ------------------------------------------------------------------------------------

    def git_authorized(self, headers: dict[str, str]) -> bool:
        expected = "Basic " + base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return headers.get("authorization") == expected

    def git_repo(self, path: str) -> tuple[Repo, str] | None:
        m = re.fullmatch(r"/([^/]+)/([^/]+)\.git(/.*)", path)
        repo = self.repos.get(f"{m.group(1)}/{m.group(2)}".lower()) if m else None
        return (repo, m.group(3)) if repo else None


def _detail(exc: BaseException) -> str:
    """The schema errors behind an openapi-core error (its own message repeats the whole value)."""
    found: list[str] = []
    inner: BaseException | None = exc
    while inner is not None:
        found += [f"at {list(e.absolute_path)}: {e.message[:200]}" for e in getattr(inner, "schema_errors", None) or []]
        inner = inner.__cause__
    return "; ".join(found) or str(exc)[:500]


def _handler(fake: FakeGithub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                out = io.BytesIO()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out.getvalue()
                    out.write(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out: that was the point of the fault

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            data = self._body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            if fake.git_repo(url.path):
                self._git(url.path, url.query, headers, data)
            else:
                self._api(url.path, url.query, headers, data)

        do_GET = do_POST = do_PATCH = do_DELETE = _dispatch  # noqa: N815

        def _api(self, path: str, query_text: str, headers: dict[str, str], data: bytes) -> None:
            query = parse_qs(query_text)
            fault = None
            with fake.lock:
                for candidate in fake.faults:
                    if candidate.method == self.command and re.fullmatch(candidate.path, path):
                        fault = candidate
                        candidate.times -= 1
                        if candidate.times <= 0:
                            fake.faults.remove(candidate)
                        break
            try:
                body = json.loads(data) if data else None
            except ValueError:
                body = None
            extra: dict[str, str] = {}
            if fault and fault.status is not None:
                status, payload = fault.status, fault.body
            else:
                status, payload, extra = fake.handle_api(self.command, path, {k: v[-1] for k, v in query.items()},
                                                         headers, body)
            out = b"" if payload is None else json.dumps(payload).encode()
            out_headers = {"Content-Type": "application/json; charset=utf-8"} if out else {}
            if self.command == "GET" and status == 200:
                etag = 'W/"' + hashlib.sha256(out).hexdigest()[:32] + '"'
                out_headers["ETag"] = etag
                if headers.get("if-none-match") == etag:
                    status, out, out_headers = 304, b"", {"ETag": etag}
            with fake.lock:
                if status != 304 and status != 401:
                    fake.rate_remaining -= 1
                out_headers.update({"x-ratelimit-limit": str(fake.rate_limit),
                                    "x-ratelimit-remaining": str(max(fake.rate_remaining, 0)),
                                    "x-ratelimit-reset": str(fake.rate_reset), "x-ratelimit-resource": "core"})
            out_headers.update(extra)
            if fault:
                out_headers.update(fault.headers)
            fake.validate(self.command, path, query, headers, data, status, out,
                          {k.lower(): v for k, v in out_headers.items()})
            with fake.lock:
                fake.requests.append((self.command, path, status, headers))
            if fault and fault.delay:
                time.sleep(fault.delay)
            self._send(status, out, out_headers)

        def _git(self, path: str, query: str, headers: dict[str, str], data: bytes) -> None:
            repo, rest = fake.git_repo(path)
            if not fake.git_authorized(headers):
                fake.git_requests.append((path, len(data), 0))
                self._send(401, b"Authentication required\n", {"WWW-Authenticate": 'Basic realm="GitHub"'})
                return
            if repo.archived and ("receive-pack" in rest or "receive-pack" in query):
                message = b"This repository was archived so it is read-only.\n"
                fake.git_requests.append((path, len(data), len(message)))
                self._send(403, message, {"Content-Type": "text/plain"})
                return
            env = {"PATH": "/usr/bin:/bin", "GIT_PROJECT_ROOT": str(repo.bare.parent), "GIT_HTTP_EXPORT_ALL": "1",
                   "PATH_INFO": f"/{repo.bare.name}{rest}", "REQUEST_METHOD": self.command, "QUERY_STRING": query,
                   "CONTENT_TYPE": headers.get("content-type", ""), "CONTENT_LENGTH": str(len(data)),
                   "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1", "GIT_CONFIG_NOSYSTEM": "1",
                   "HOME": str(repo.bare.parent)}
            for name in ("content-encoding", "git-protocol"):
                if name in headers:
                    env["HTTP_" + name.upper().replace("-", "_")] = headers[name]
            if "git-protocol" in headers:
                env["GIT_PROTOCOL"] = headers["git-protocol"]
            proc = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True, check=False)
            head, _, out = proc.stdout.partition(b"\r\n\r\n")
            status, out_headers = 200, {}
            for line in head.decode("latin-1").split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                elif key:
                    out_headers[key] = value.strip()
            fake.git_requests.append((path, len(data), len(out)))
            self._send(status, out, out_headers)

    return Handler


def connection_env(fake: FakeGithub, token: str | None = None) -> str:
    """An ``AIRFLOW_CONN_*`` value for a GitHub connection to ``fake`` (a PAT in the password)."""
    return json.dumps({"conn_type": "github", "host": fake.url, "password": token or fake.token})
