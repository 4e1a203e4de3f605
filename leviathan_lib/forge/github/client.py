"""The GitHub REST transport: the token from an Airflow connection, bounded retries, rate limits, ETags.

Credentials come from :class:`~airflow.providers.github.hooks.github.GithubHook` (a PAT in the
connection's password, or a GitHub App through its extras, whose installation token PyGithub mints for
this run; GitHub Enterprise Server through the connection host). The hook's PyGithub client is used for
exactly that: the token and the API base URL. The calls themselves go through ``requests``, because
PyGithub hides what Leviathan must control: it has no ``If-None-Match`` on list calls (so an idle cycle
would spend rate-limit budget), it retries POSTs on its own (a timed-out "create pull request" retried
blindly is a duplicate PR), and its secondary-rate-limit backoff sleeps for unbounded, untestable times.

Every failure is a :class:`ForgeError` naming the repository and, for 401/403/404, what the token is
missing, so the guardrails stop the cycle with ``forge_state_unknown`` and say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field

from leviathan_lib.forge.base import ForgeError
from leviathan_lib.forge.github.pacing import AccountPacing
from leviathan_lib.git import urls
from leviathan_lib.git.auth import basic_auth_value, extra_header_env

DEFAULT_CONN_ID = "github_default"
API_VERSION = "2022-11-28"

# The fine-grained permission each kind of call needs, for error messages.
READ_METADATA = "Metadata: read"
READ_PULLS = "Pull requests: read"
WRITE_PULLS = "Pull requests: write"
WRITE_CONTENTS = "Contents: write"
READ_ISSUES = "Issues: read"
WRITE_ISSUES = "Issues: write"


class RetryPolicy(BaseModel):
    """Bounds on waiting for GitHub: retries per call and total sleep per call, both hard limits."""

    model_config = ConfigDict(frozen=True)

    attempts: int = Field(default=4, ge=1)
    max_total_sleep: float = Field(default=90.0, ge=0)
    backoff: float = Field(default=1.0, ge=0)
    #: GitHub's advice when a secondary rate limit names no wait: at least a minute.
    secondary_wait: float = Field(default=60.0, ge=0)
    #: GitHub's guidance for content-creating requests: at least a second between writes, here across every
    #: target of the account (:mod:`.pacing`): 60 a minute, below GitHub's 80.
    write_interval: float = Field(default=1.0, ge=0)
    #: Writes of the account in any hour, below GitHub's 500 content-creating requests an hour.
    writes_per_hour: int = Field(default=400, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=20.0, gt=0)


class OutcomeUnknown(ForgeError):
    """A write got no answer (timeout, 5xx): GitHub may or may not have done it."""

    CODE = "forge_outcome_unknown"


class EtagCache:
    """Last ETag and body per GET, per repository, in a small JSON file under the state dir.

    It survives between task processes, so the next cycle's poll is a 304 that costs no rate-limit
    budget. It holds only what the API returned (no credentials); losing it costs one full request.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        return entry if isinstance(entry, dict) and "etag" in entry and "body" in entry else None

    def put(self, key: str, etag: str, body: Any) -> None:
        self.entries[key] = {"etag": etag, "body": body}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".etag.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.entries, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs budget next time


def parse_repo_url(repo_url: str) -> tuple[str, str]:
    """``(owner, repo)`` from ``https://host/owner/repo[.git]``; ForgeError for anything else."""
    try:
        parsed = urls.parse_repo_url(repo_url)
    except urls.RepoUrlError as exc:
        raise ForgeError(f"GitHub target URL {repo_url!r}: {exc}") from None
    if parsed.kind not in ("https", "http"):
        raise ForgeError(f"GitHub target URL {repo_url!r}: not an http(s) URL")
    if parsed.owner_name is None:
        raise ForgeError(f"GitHub target URL {repo_url!r}: expected https://HOST/OWNER/REPO")
    return parsed.owner_name



def message_of(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.reason or ""
    if not isinstance(data, dict):
        return resp.reason or ""
    message = str(data.get("message") or resp.reason or "")
    details = [e.get("message") or e.get("code") for e in data.get("errors") or [] if isinstance(e, dict)]
    return f"{message} ({'; '.join(str(d) for d in details if d)})" if any(details) else message


def _mask(*values: str) -> None:
    """Register secrets with Airflow's masker (task process and supervisor) before they can be logged."""
    from airflow.sdk.log import mask_secret

    for value in values:
        mask_secret(value)


class GithubClient:
    """One GitHub repository's API, with credentials from the Airflow connection ``conn_id``; the PR options
    (``draft``, ``labels``, ``reviewers``, ``assignees``) are what new PRs get (:mod:`.pulls`)."""

    def __init__(  # noqa: PLR0913 — keyword-only PR options and test seams (clock, sleep, cache)
        self,
        repo_url: str,
        conn_id: str = DEFAULT_CONN_ID,
        *,
        draft: bool = False,
        labels: tuple[str, ...] = (),
        reviewers: tuple[str, ...] = (),
        assignees: tuple[str, ...] = (),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        cache_dir: Path | None = None,
    ):
        from airflow.providers.github.hooks.github import GithubHook

        self.owner, self.repo = parse_repo_url(repo_url)
        self.full_name = f"{self.owner}/{self.repo}"
        self._repo_url = repo_url
        self.conn_id = conn_id
        self.draft, self.labels = draft, tuple(labels)
        self.reviewers, self.assignees = tuple(reviewers), tuple(assignees)
        self.retry = retry or RetryPolicy()
        self._sleep, self._clock = sleep, clock
        try:
            client = GithubHook(github_conn_id=conn_id).get_conn()
            requester = client.requester
            token = requester.auth.token if requester.auth else None  # App auth mints its token here
        except Exception as exc:  # noqa: BLE001 — the hook raises ValueError, AirflowNotFoundException, GithubException
            raise ForgeError(f"cannot use GitHub connection {conn_id!r} for {self.full_name}: "
                             f"{type(exc).__name__}: {exc}") from None
        if not token:
            raise ForgeError(f"GitHub connection {conn_id!r} yields no token for {self.full_name}")
        _mask(token, basic_auth_value(token), basic_auth_value(token).removeprefix("Basic "))
        self._token = token
        self.api = requester.base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers.update({
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "leviathan",
        })
        if cache_dir is None:
            from leviathan_lib.core.paths import state_dir

            cache_dir = state_dir() / "github-etags"
        key = hashlib.sha256(f"{self.api}|{self.full_name}".encode()).hexdigest()[:16]
        self._cache = EtagCache(cache_dir / f"{key}.json")
        self._pacing = AccountPacing(cache_dir.parent / "github-pacing", f"{self.api}|{conn_id}")
        #: This client's clock after its own waits (a clock that moves only while sleeping, in tests, too).
        self._waited_until = 0.0
        self._rate_remaining: int | None = None
        self._rate_reset: float | None = None
        self._repo_data: dict[str, Any] | None = None
        self._created_pr = False
        #: What this forge sent, for the idle-cycle budget: (method, path, status).
        self.calls: list[tuple[str, str, int]] = []

    # -- HTTP ------------------------------------------------------------------------------------------

    def _where(self, method: str, path: str) -> str:
        return f"GitHub {method} {path} for {self.full_name}"

    def _wait_for_primary_limit(self, method: str, path: str, slept: float) -> float:
        """Sleep until the primary limit resets if that fits the budget; ForgeError otherwise."""
        if self._rate_remaining != 0 or self._rate_reset is None:
            return 0.0
        wait = self._rate_reset - self._clock() + 1
        if wait <= 0:
            return 0.0
        if slept + wait > self.retry.max_total_sleep:
            reset = time.strftime("%H:%M:%S UTC", time.gmtime(self._rate_reset))
            raise ForgeError(f"{self._where(method, path)}: the rate limit of connection {self.conn_id!r} "
                             f"is used up until {reset}; not waiting {wait:.0f}s (limit "
                             f"{self.retry.max_total_sleep:.0f}s), forge state unknown")
        self._slept(wait)
        self._rate_remaining = None
        return wait

    def _note_rate(self, resp: requests.Response) -> None:
        remaining, reset = resp.headers.get("x-ratelimit-remaining"), resp.headers.get("x-ratelimit-reset")
        if remaining is not None and remaining.isdigit():
            self._rate_remaining = int(remaining)
        if reset is not None and reset.isdigit():
            self._rate_reset = float(reset)

    def _rate_limit_wait(self, resp: requests.Response, attempt: int) -> float | None:
        """Seconds to wait if ``resp`` is a primary or secondary rate limit, else None."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = resp.headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after)
        if resp.headers.get("x-ratelimit-remaining") == "0" and self._rate_reset is not None:
            return max(0.0, self._rate_reset - self._clock()) + 1
        if resp.status_code == 429 or "rate limit" in message_of(resp).lower():
            return self.retry.secondary_wait * 2 ** (attempt - 1)
        return None

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None,
              headers: dict[str, str] | None = None, idempotent: bool = True) -> requests.Response:
        """One API call with bounded retries: rate limits always; 5xx and timeouts only if ``idempotent``."""
        slept = 0.0
        for attempt in range(1, self.retry.attempts + 1):
            slept += self._wait_for_primary_limit(method, path, slept)
            slept += self._wait_for_account(method, path, slept)
            try:
                resp = self._session.request(method, self.api + path, params=params, json=json_body,
                                             headers=headers, allow_redirects=False,
                                             timeout=(self.retry.connect_timeout, self.retry.read_timeout))
            except requests.RequestException as exc:
                problem = f"no answer ({type(exc).__name__})"
                if not idempotent:
                    raise OutcomeUnknown(f"{self._where(method, path)}: {problem}; outcome unknown") from None
                wait = self.retry.backoff * 2 ** (attempt - 1)
            else:
                self.calls.append((method, path, resp.status_code))
                self._note_rate(resp)
                wait = self._rate_limit_wait(resp, attempt)
                if wait is not None:
                    self._pacing.block(self._now(), wait)  # owed by every request of the account, every target's
                    problem = f"rate limited ({resp.status_code} {message_of(resp)})"
                elif resp.status_code >= 500:
                    problem = f"server error {resp.status_code}"
                    if not idempotent:
                        raise OutcomeUnknown(f"{self._where(method, path)}: {problem}; outcome unknown")
                    wait = self.retry.backoff * 2 ** (attempt - 1)
                else:
                    return resp
            if attempt == self.retry.attempts or slept + wait > self.retry.max_total_sleep:
                raise ForgeError(f"{self._where(method, path)}: {problem} after {attempt} attempt(s) and "
                                 f"{slept:.0f}s of waiting; giving up, forge state unknown")
            self._slept(wait)
            slept += wait
            self._rate_remaining = None  # waited as told; the next answer says where the budget stands
        raise AssertionError("unreachable")  # the loop either returns or raises

    def _wait_for_account(self, method: str, path: str, slept: float) -> float:
        """Sleep for the account's pacing (:mod:`.pacing`): a ``Retry-After`` any target of the account got,
        and for a write its slot; ForgeError when that does not fit what is left of the wait budget."""
        left, now = self.retry.max_total_sleep - slept, self._now()
        if method == "GET":
            wait = self._pacing.blocked_for(now)
        else:
            wait = self._pacing.reserve_write(now, interval=self.retry.write_interval,
                                              per_hour=self.retry.writes_per_hour, budget=left)
        if wait <= 0:
            return 0.0
        if wait > left:
            until = time.strftime("%H:%M:%S UTC", time.gmtime(now + wait))
            raise ForgeError(f"{self._where(method, path)}: connection {self.conn_id!r} may not send this before "
                             f"{until} (GitHub's Retry-After for the account, or its write pacing: "
                             f"{self.retry.writes_per_hour} an hour); not waiting {wait:.0f}s (limit "
                             f"{self.retry.max_total_sleep:.0f}s), forge state unknown")
        self._slept(wait)
        return wait

    def _now(self) -> float:
        return max(self._clock(), self._waited_until)

    def _slept(self, seconds: float) -> None:
        """Sleep, and remember until when this client waited."""
        until = self._now() + seconds
        self._sleep(seconds)
        self._waited_until = until

    def _fail(self, resp: requests.Response, method: str, path: str, permission: str) -> ForgeError:
        """The error for an unexpected answer, naming the repository and what the token lacks."""
        where, message = self._where(method, path), message_of(resp)
        if resp.status_code == 401:
            return ForgeError(f"{where}: 401 {message}: the token of connection {self.conn_id!r} is wrong, "
                              f"expired or revoked")
        if resp.status_code == 403:
            if "archived" in message.lower():
                return ForgeError(f"{where}: 403 {message}: repository {self.full_name} is archived (read-only)")
            return ForgeError(f"{where}: 403 {message}: the token of connection {self.conn_id!r} lacks "
                              f"'{permission}' on {self.full_name}")
        if resp.status_code == 404:
            return ForgeError(f"{where}: 404 {message}: repository {self.full_name} does not exist or the token "
                              f"of connection {self.conn_id!r} cannot see it (needs '{READ_METADATA}' and "
                              f"'{permission}' on it)")
        if resp.status_code in (301, 302, 307, 308):
            return ForgeError(f"{where}: {resp.status_code}: repository {self.full_name} moved to "
                              f"{resp.headers.get('location', '?')}; update target_repo_url")
        return ForgeError(f"{where}: unexpected {resp.status_code} {message}")

    def _get(self, path: str, permission: str, params: dict[str, Any] | None = None,
             missing: ForgeError | Callable[[int], ForgeError] | None = None) -> Any:
        """A conditional GET: a 304 answers from the cache and costs no rate-limit budget.

        ``missing`` is raised for a 404 (and a 410, gone) instead of the generic "repository not found" error
        (a callable: made from the status).
        """
        key = path + ("?" + "&".join(f"{k}={v}" for k, v in sorted(params.items())) if params else "")
        cached = self._cache.get(key)
        headers = {"If-None-Match": cached["etag"]} if cached else None
        resp = self._send("GET", path, params=params, headers=headers)
        if resp.status_code == 304 and cached:
            return cached["body"]
        if resp.status_code in (404, 410) and missing is not None:
            raise missing if isinstance(missing, ForgeError) else missing(resp.status_code)
        if resp.status_code != 200:
            raise self._fail(resp, "GET", path, permission)
        body = resp.json()
        if etag := resp.headers.get("etag"):
            self._cache.put(key, etag, body)
        return body

    # -- repository ------------------------------------------------------------------------------------

    @property
    def repo_url(self) -> str:
        return self._repo_url

    def git_push_env(self) -> dict[str, str]:
        return extra_header_env(self._repo_url, self._token)

    def repository(self) -> dict[str, Any]:
        """The repository's metadata; ForgeError if Leviathan cannot deliver to it (archived, read-only)."""
        if self._repo_data is None:
            path = f"/repos/{self.owner}/{self.repo}"
            data = self._get(path, READ_METADATA)
            if data.get("archived") or data.get("disabled"):
                state = "archived" if data.get("archived") else "disabled"
                raise ForgeError(f"repository {self.full_name} is {state} (read-only): Leviathan cannot push "
                                 f"or open pull requests there; unarchive it or disable the target")
            permissions = data.get("permissions")
            if isinstance(permissions, dict) and permissions.get("push") is False:
                raise ForgeError(f"the token of connection {self.conn_id!r} cannot push to {self.full_name}: "
                                 f"it needs '{WRITE_CONTENTS}' (on agent/* branches) and '{WRITE_PULLS}'")
            self._repo_data = data
        return self._repo_data

    def default_branch(self) -> str:
        return str(self.repository()["default_branch"])

    def probe(self, path: str) -> requests.Response:
        """One uncached GET answered as it is, headers included (``leviathan forge check`` reads the
        permission, scope and rate-limit headers); ForgeError only when GitHub gives no usable answer."""
        return self._send("GET", path)
