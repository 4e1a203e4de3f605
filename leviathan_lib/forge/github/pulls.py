"""Pull requests and their ``agent/`` branches on GitHub: list, find, open (never twice), update, close."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from leviathan_lib.forge.base import (
    AGENT_BRANCH_PREFIX,
    ForgeConflict,
    ForgeError,
    PullRequest,
    PullRequestNotFound,
)
from leviathan_lib.forge.github.client import (
    READ_METADATA,
    READ_PULLS,
    WRITE_PULLS,
    GithubClient,
    OutcomeUnknown,
    message_of,
)

log = logging.getLogger("leviathan")


def _pull(data: dict[str, Any]) -> PullRequest:
    merged_at = data.get("merged_at")
    state = "open" if data["state"] == "open" else "merged" if merged_at else "closed"
    return PullRequest(
        number=data["number"],
        title=data["title"],
        body=data.get("body") or "",
        head=data["head"]["ref"],
        base=data["base"]["ref"],
        state=state,
        url=data["html_url"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        merged_at=merged_at,
        closed_at=data.get("closed_at") if state != "open" else None,
        head_sha=data["head"].get("sha"),
        merge_sha=(data.get("merge_commit_sha") or data["head"].get("sha")) if merged_at else None,
    )



class Pulls(GithubClient):
    """The pull-request half of :class:`~leviathan_lib.forge.github.GithubForge`."""

    def _ours(self, data: dict[str, Any]) -> bool:
        """A PR from a branch of this repository (not a fork's branch that happens to share the name)."""
        head_repo = data["head"].get("repo") or {}
        return str(head_repo.get("full_name", "")).lower() == self.full_name.lower()

    def list_open_prs(self, head_prefix: str = AGENT_BRANCH_PREFIX) -> list[PullRequest]:
        self.repository()
        path = f"/repos/{self.owner}/{self.repo}/pulls"
        items = self._get(path, READ_PULLS, {"state": "open", "per_page": 100, "sort": "created",
                                             "direction": "asc"})
        if len(items) >= 100:
            raise ForgeError(f"{self.full_name} has 100 or more open pull requests; Leviathan does not page "
                             f"through them and treats the forge state as unknown")
        return [_pull(d) for d in items if self._ours(d) and d["head"]["ref"].startswith(head_prefix)]

    def find_pr_by_head(self, head: str) -> PullRequest | None:
        path = f"/repos/{self.owner}/{self.repo}/pulls"
        items = self._get(path, READ_PULLS, {"state": "all", "head": f"{self.owner}:{head}", "sort": "created",
                                             "direction": "desc", "per_page": 10})
        matches = [d for d in items if self._ours(d) and d["head"]["ref"] == head]
        return _pull(matches[0]) if matches else None

    def get_pr(self, number: int) -> PullRequest:
        path = f"/repos/{self.owner}/{self.repo}/pulls/{number}"
        missing = PullRequestNotFound(f"no pull request #{number} in {self.full_name}")
        return _pull(self._get(path, READ_PULLS, missing=missing))

    def create_pr(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open the PR; a POST that got no answer is retried only after checking it was not created."""
        if self._created_pr:
            raise ForgeError(f"refusing a second pull request on {self.full_name} in one cycle")
        self.repository()
        path = f"/repos/{self.owner}/{self.repo}/pulls"
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": self.draft}
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resp = self._send("POST", path, json_body=payload, idempotent=False)
                break
            except OutcomeUnknown as exc:
                existing = self.find_pr_by_head(head)
                if existing is not None and existing.state == "open":
                    self._created_pr = True
                    return existing
                if attempt == self.retry.attempts:
                    raise ForgeError(f"{exc}; no pull request from {head} exists, giving up after {attempt} "
                                     f"attempt(s), forge state unknown") from None
                self._sleep(self.retry.backoff * 2 ** (attempt - 1))
        if resp.status_code == 422 and "already exists" in message_of(resp):
            raise ForgeConflict(f"branch {head!r} already has an open pull request on {self.full_name}")
        if resp.status_code == 422:
            raise ForgeError(f"GitHub refused the pull request {head} -> {base} on {self.full_name}: "
                             f"422 {message_of(resp)}")
        if resp.status_code != 201:
            raise self._fail(resp, "POST", path, WRITE_PULLS)
        self._created_pr = True
        data = resp.json()
        if self.labels:
            labels_path = f"/repos/{self.owner}/{self.repo}/issues/{data['number']}/labels"
            labelled = self._send("POST", labels_path, json_body={"labels": list(self.labels)})
            if labelled.status_code != 200:
                raise self._fail(labelled, "POST", labels_path, WRITE_PULLS)
        number = data["number"]
        self._hand_over(f"/repos/{self.owner}/{self.repo}/pulls/{number}/requested_reviewers",
                        {"reviewers": list(self.reviewers)}, "pr_reviewers")
        self._hand_over(f"/repos/{self.owner}/{self.repo}/issues/{number}/assignees",
                        {"assignees": list(self.assignees)}, "pr_assignees")
        return _pull(data)

    def _hand_over(self, path: str, payload: dict[str, list[str]], key: str) -> None:
        """Request reviewers or add assignees to a new PR. The PR stands without them, so a refusal (a
        login that is no collaborator: 422) is logged, naming the target key, rather than failing delivery."""
        if not any(payload.values()):
            return
        try:  # asking twice for the same people changes nothing, so retrying is safe
            resp = self._send("POST", path, json_body=payload)
        except ForgeError as exc:
            log.warning("%s not applied: %s", key, exc)
            return
        if resp.status_code != 201:
            log.warning("%s not applied: %s", key, self._fail(resp, "POST", path, WRITE_PULLS))

    def _patch_pr(self, number: int, payload: dict[str, str]) -> PullRequest:
        """PATCH a PR (setting a body or a state twice changes nothing, so 5xx and timeouts are retried)."""
        path = f"/repos/{self.owner}/{self.repo}/pulls/{number}"
        resp = self._send("PATCH", path, json_body=payload)
        if resp.status_code == 404:
            raise PullRequestNotFound(f"no pull request #{number} in {self.full_name}")
        if resp.status_code != 200:
            raise self._fail(resp, "PATCH", path, WRITE_PULLS)
        return _pull(resp.json())

    def update_pr(self, number: int, *, body: str) -> PullRequest:
        return self._patch_pr(number, {"body": body})

    def close_pr(self, number: int) -> PullRequest:
        current = self.get_pr(number)
        if current.state == "merged":
            raise ForgeConflict(f"pull request #{number} on {self.full_name} is merged; it cannot be closed")
        return current if current.state == "closed" else self._patch_pr(number, {"state": "closed"})

    def mergeable(self, number: int) -> bool | None:
        path = f"/repos/{self.owner}/{self.repo}/pulls/{number}"
        missing = PullRequestNotFound(f"no pull request #{number} in {self.full_name}")
        data = self._get(path, READ_PULLS, missing=missing)
        value = data.get("mergeable")
        return value if isinstance(value, bool) and data.get("state") == "open" else None


    def branch_sha(self, branch: str) -> str | None:
        path = f"/repos/{self.owner}/{self.repo}/git/ref/heads/{quote(branch, safe='/')}"
        resp = self._send("GET", path)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, "GET", path, READ_METADATA)
        sha = (resp.json().get("object") or {}).get("sha")
        if not isinstance(sha, str):
            raise ForgeError(f"{self._where('GET', path)}: the answer names no commit")
        return sha
