"""``leviathan forge check``: can this target's forge connection do what Leviathan needs, and if not, why.

Like an Airflow hook's ``test_connection``: one cheap call, an answer a person can act on. GitHub: one
uncached ``GET /repos/{owner}/{repo}`` shows whether the token is accepted (401: bad token), sees the
repository (404), may push and open PRs (``permissions.push``; a classic token's ``X-OAuth-Scopes`` must hold
``repo``, or ``public_repo`` for a public repository) and how much rate-limit budget is left (its headers).
The local forge: the bare repository and its records are readable, and its objects and records writable.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.secrets_scan import redact_text
from leviathan_lib.forge.base import ForgeError

Problem = Literal["bad_connection", "bad_token", "not_found", "too_few_permissions", "read_only_repository",
                  "rate_limited", "unreachable", "unexpected_answer", "unreadable", "unwritable"]


class ForgeCheck(BaseModel):
    """What the check found: ``facts`` (identity, permissions, budget) and the first ``problem``, if any."""

    forge: Literal["local", "github"]
    repository: str
    facts: list[str] = Field(default_factory=list)
    problem: Problem | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def fail(self, problem: Problem, detail: str) -> ForgeCheck:
        self.problem, self.detail = problem, redact_text(detail)
        return self


def check_target(target: TargetConfig, config_path: Path) -> ForgeCheck:
    """Check the forge ``target`` names, as its cycles would open it."""
    if target.forge == "github":
        from leviathan_lib.forge.github import DEFAULT_CONN_ID

        return check_github(target.target_repo_url, target.forge_conn_id or DEFAULT_CONN_ID)
    return check_local(target.repo_location(config_path), target.target_branch)


#: A refused ``GET /repos/{owner}/{repo}``: the problem and what it means for the token.
_REFUSALS: dict[int, tuple[Problem, str]] = {
    401: ("bad_token", "the token is wrong, expired or revoked"),
    403: ("too_few_permissions", "the token may not read the repository ('Metadata: read' at least)"),
    404: ("not_found", "the repository does not exist or the token cannot see it"),
    301: ("not_found", "the repository moved; update target_repo_url"),
}


def check_github(repo_url: str, conn_id: str) -> ForgeCheck:
    """One call, no retries (a person is waiting): 401, 403, 404, no answer and a used-up budget each say so."""
    from leviathan_lib.forge.github.client import GithubClient, RetryPolicy, message_of

    result = ForgeCheck(forge="github", repository=redact_text(repo_url))
    try:
        client = GithubClient(repo_url, conn_id, retry=RetryPolicy(attempts=1, max_total_sleep=0, read_timeout=10.0),
                              sleep=lambda _: None)  # fmt: skip
    except ForgeError as exc:
        return result.fail("bad_connection", str(exc))
    result.facts.append(f"connection: {conn_id} -> {client.api}")
    try:
        resp = client.probe(f"/repos/{client.owner}/{client.repo}")
    except ForgeError as exc:
        limited = "rate limit" in str(exc)
        return result.fail("rate_limited" if limited else "unreachable", str(exc))
    _note_budget(result, resp.headers)
    if resp.status_code != 200:
        problem, why = _REFUSALS.get(resp.status_code, ("unexpected_answer", "an answer Leviathan cannot use"))
        return result.fail(problem, f"GitHub answered {resp.status_code} {message_of(resp)}: {why} "
                                    f"(connection {conn_id!r}, repository {client.full_name})")
    return _judge_repository(result, resp.json(), resp.headers)


def _note_budget(result: ForgeCheck, headers: Mapping[str, str]) -> None:
    remaining, limit, reset = (headers.get(f"x-ratelimit-{k}") for k in ("remaining", "limit", "reset"))
    if remaining is not None and limit is not None:
        when = time.strftime("%H:%M:%S UTC", time.gmtime(int(reset))) if reset and reset.isdigit() else "?"
        result.facts.append(f"rate limit: {remaining} of {limit} requests left, resets at {when}")


def _judge_repository(result: ForgeCheck, data: dict[str, Any], headers: Mapping[str, str]) -> ForgeCheck:
    reported = data.get("permissions")
    permissions: dict[str, Any] = reported if isinstance(reported, dict) else {}
    granted = [name for name in ("admin", "maintain", "push", "triage", "pull") if permissions.get(name)]
    result.facts.append(f"repository: {data.get('full_name')} ({'private' if data.get('private') else 'public'}, "
                        f"default branch {data.get('default_branch')})")
    result.facts.append(f"repository permissions of the token: {', '.join(granted) or 'none reported'}")
    scopes = headers.get("x-oauth-scopes")
    if scopes is not None:
        result.facts.append(f"token scopes (classic token): {scopes or 'none'}")
    if accepted := headers.get("x-accepted-github-permissions"):
        result.facts.append(f"permissions this call accepts: {accepted}")
    if data.get("archived") or data.get("disabled"):
        return result.fail("read_only_repository", f"repository {data.get('full_name')} is "
                                                   f"{'archived' if data.get('archived') else 'disabled'}")
    if permissions and not permissions.get("push"):
        return result.fail("too_few_permissions", "the token cannot push: Leviathan needs 'Contents: write' (on "
                                                  "agent/* branches) and 'Pull requests: write'")
    needed = {"repo"} if data.get("private") else {"repo", "public_repo"}
    if scopes is not None and not needed & {s.strip() for s in scopes.split(",")}:
        return result.fail("too_few_permissions", f"the classic token's scopes ({scopes or 'none'}) lack "
                                                  f"{' or '.join(sorted(needed))}")
    remaining = headers.get("x-ratelimit-remaining")
    if remaining == "0":
        return result.fail("rate_limited", "the rate limit is used up; cycles skip on forge_state_unknown until "
                                           "it resets")
    return result


def check_local(location: str, branch: str) -> ForgeCheck:
    """The bare repository opens, its branch and records read, and objects and records can be written (a
    temporary object file is created and removed, the records lock is taken)."""
    from leviathan_lib.forge.local import LocalForge
    from leviathan_lib.forge.local_files import locked

    result = ForgeCheck(forge="local", repository=redact_text(location))
    try:
        forge = LocalForge(location)
        prs = forge.list_prs()
        head = forge.branch_sha(branch)
    except ForgeError as exc:
        return result.fail("unreadable", str(exc))
    result.facts.append(f"repository: {forge.path} (bare), {len(prs)} pull request record(s)")
    if head is None:
        return result.fail("unreadable", f"{forge.path} has no branch {branch!r} (target_branch)")
    result.facts.append(f"branch {branch}: {head}")
    try:
        fd, probe = tempfile.mkstemp(dir=forge.path / "objects", prefix=".leviathan-check-")
        os.close(fd)
        os.unlink(probe)
        with locked(forge.path / "leviathan" / "pulls.lock", forge.path / "leviathan" / "pulls"):
            pass
    except (OSError, ForgeError) as exc:
        return result.fail("unwritable", f"{forge.path}: {exc}")
    result.facts.append("writable: objects (pushes) and leviathan/ (PR records)")
    return result
