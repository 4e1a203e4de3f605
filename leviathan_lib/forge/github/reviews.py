"""Reviews and conversation comments on GitHub PRs, and who may command Leviathan (their permission)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from leviathan_lib.core.commands import MAX_ITEMS_PER_PR, PrComment, Review
from leviathan_lib.forge.base import ForgeError
from leviathan_lib.forge.github.client import READ_ISSUES, READ_METADATA, READ_PULLS, WRITE_PULLS, GithubClient

log = logging.getLogger("leviathan")

#: Pages of reviews or comments read per PR at most (100 each): the newest :data:`MAX_ITEMS_PER_PR` count.
MAX_PAGES = 5
_REVIEW_STATES = {"APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"}


def _login(data: dict[str, Any]) -> str:
    """The author of a review or comment; a deleted account (``user: null``) is GitHub's ``ghost``."""
    user = data.get("user")
    return str(user.get("login")) if isinstance(user, dict) and user.get("login") else "ghost"


class Reviews(GithubClient):
    """The review half of :class:`~leviathan_lib.forge.github.GithubForge`."""

    def comment(self, number: int, body: str) -> None:
        path = f"/repos/{self.owner}/{self.repo}/issues/{number}/comments"
        resp = self._send("POST", path, json_body={"body": body}, idempotent=False)
        if resp.status_code != 201:
            raise self._fail(resp, "POST", path, WRITE_PULLS)

    def react(self, comment_id: int, content: str) -> None:
        path = f"/repos/{self.owner}/{self.repo}/issues/comments/{comment_id}/reactions"
        resp = self._send("POST", path, json_body={"content": content}, idempotent=True)
        if resp.status_code not in (200, 201):
            raise self._fail(resp, "POST", path, WRITE_PULLS)

    def _pages(self, path: str, permission: str) -> list[dict[str, Any]]:
        """Up to :data:`MAX_PAGES` pages of a chronological list; the newest items are kept."""
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            chunk = self._get(path, permission, {"per_page": 100, "page": page})
            if not isinstance(chunk, list):
                raise ForgeError(f"{self._where('GET', path)}: expected a list")
            items += [d for d in chunk if isinstance(d, dict)]
            if len(chunk) < 100:
                break
        return items[-MAX_ITEMS_PER_PR:]

    def list_reviews(self, number: int) -> list[Review]:
        path = f"/repos/{self.owner}/{self.repo}/pulls/{number}/reviews"
        return [Review(id=d["id"], author=_login(d), body=d.get("body") or "", submitted_at=d.get("submitted_at"),
                       state=d["state"] if d.get("state") in _REVIEW_STATES else "COMMENTED",
                       commit_sha=d.get("commit_id")) for d in self._pages(path, READ_PULLS)]

    def list_comments(self, number: int) -> list[PrComment]:
        path = f"/repos/{self.owner}/{self.repo}/issues/{number}/comments"
        return [PrComment(id=d["id"], author=_login(d), body=d.get("body") or "", created_at=d["created_at"])
                for d in self._pages(path, READ_ISSUES)]

    def permission(self, login: str) -> str:
        """GitHub's base role of ``login``; a 404 (not a collaborator) is ``none``, any failure ``unknown``."""
        path = f"/repos/{self.owner}/{self.repo}/collaborators/{quote(login, safe='')}/permission"
        try:
            resp = self._send("GET", path)
        except ForgeError as exc:
            log.warning("permission of %s on %s unknown: %s", login, self.full_name, exc)
            return "unknown"
        if resp.status_code == 404:
            return "none"
        if resp.status_code != 200:
            log.warning("permission of %s on %s unknown: %s", login, self.full_name,
                        self._fail(resp, "GET", path, READ_METADATA))
            return "unknown"
        permission = resp.json().get("permission")
        return permission if permission in ("admin", "maintain", "write", "triage", "read", "none") else "unknown"
