"""Issues on GitHub: the target's dashboard (create once, find by title and label, rewrite)."""

from __future__ import annotations

from typing import Any

import requests

from leviathan_lib.forge.base import ForgeError, Issue, IssueNotFound
from leviathan_lib.forge.github.client import READ_ISSUES, WRITE_ISSUES, GithubClient, OutcomeUnknown, message_of


def _issue(data: dict[str, Any]) -> Issue:
    labels = tuple(str(lab.get("name")) if isinstance(lab, dict) else str(lab) for lab in data.get("labels") or [])
    return Issue(number=data["number"], title=data["title"], body=data.get("body") or "",
                 state="open" if data["state"] == "open" else "closed", url=data["html_url"], labels=labels)


class Issues(GithubClient):
    """The issue half of :class:`~leviathan_lib.forge.github.GithubForge`."""

    def create_issue(self, *, title: str, body: str, label: str) -> Issue:
        """One POST, never retried blindly: a lost answer is answered by looking for the issue it made."""
        path = f"/repos/{self.owner}/{self.repo}/issues"
        try:
            resp = self._send("POST", path, json_body={"title": title, "body": body, "labels": [label]},
                              idempotent=False)
        except OutcomeUnknown as exc:
            found = self.find_issue(title=title, label=label)
            if found is not None:
                return found
            raise ForgeError(f"{exc}; no such issue exists yet, the next cycle looks again before creating") from None
        if resp.status_code != 201:
            raise self._fail(resp, "POST", path, WRITE_ISSUES)
        return _issue(resp.json())

    def _issue_answer(self, resp: requests.Response, method: str, path: str, number: int, permission: str) -> Issue:
        if resp.status_code in (404, 410):  # 410: deleted (or issues turned off)
            raise IssueNotFound(f"no issue #{number} in {self.full_name} ({resp.status_code} {message_of(resp)})")
        if resp.status_code != 200:
            raise self._fail(resp, method, path, permission)
        data = resp.json()
        if data.get("pull_request"):
            raise IssueNotFound(f"#{number} in {self.full_name} is a pull request, not an issue")
        return _issue(data)

    def get_issue(self, number: int) -> Issue:
        """A conditional GET: every cycle reads the dashboard for ticks, and an unchanged one is a free 304."""
        path = f"/repos/{self.owner}/{self.repo}/issues/{number}"
        data = self._get(path, READ_ISSUES, missing=lambda status: IssueNotFound(
            f"no issue #{number} in {self.full_name} ({status}: deleted, transferred, or issues turned off)"))
        if data.get("pull_request"):
            raise IssueNotFound(f"#{number} in {self.full_name} is a pull request, not an issue")
        return _issue(data)

    def update_issue(self, number: int, *, title: str, body: str) -> Issue:
        path = f"/repos/{self.owner}/{self.repo}/issues/{number}"
        # Sending the same title and body twice changes nothing, so a lost answer may be retried.
        resp = self._send("PATCH", path, json_body={"title": title, "body": body})
        return self._issue_answer(resp, "PATCH", path, number, WRITE_ISSUES)

    def find_issue(self, *, title: str, label: str) -> Issue | None:
        path = f"/repos/{self.owner}/{self.repo}/issues"
        items = self._get(path, READ_ISSUES, {"state": "open", "labels": label, "sort": "created",
                                              "direction": "asc", "per_page": 100})
        for data in items:
            if not data.get("pull_request") and data.get("title") == title:
                return _issue(data)
        return None
