"""CI on a GitHub commit: the combined commit status plus the check runs, read with conditional requests.

Both reads go through the client's ETag cache, so a cycle that finds a PR head's CI unchanged is
answered 304 and spends no rate-limit budget. A status ``error`` and a check run that ended ``failure``,
``timed_out``, ``cancelled``, ``action_required``, ``stale`` or ``startup_failure`` are failures;
``neutral`` and ``skipped`` count as passed; a run not completed (or with a conclusion GitHub adds
later) is pending. The combined endpoint's own ``state`` is not used: GitHub says ``pending`` for a
commit that has no status at all, which here is ``none``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from leviathan_lib.core.ci import CheckState, CiCheck, CiStatus, ci_status, clip
from leviathan_lib.forge.github.client import GithubClient

READ_STATUSES = "Commit statuses: read"
READ_CHECKS = "Checks: read"
#: Statuses and check runs read per commit (one page each).
PER_PAGE = 100
_STATUS_STATES: dict[str, CheckState] = {"success": "success", "pending": "pending", "failure": "failure",
                                         "error": "failure"}
_PASSED = frozenset({"success", "neutral", "skipped"})
_FAILED = frozenset({"failure", "timed_out", "cancelled", "action_required", "stale", "startup_failure"})


def _run_state(run: dict[str, Any]) -> CheckState:
    if run.get("status") != "completed":
        return "pending"
    conclusion = run.get("conclusion")
    return "success" if conclusion in _PASSED else "failure" if conclusion in _FAILED else "pending"


def _run_summary(run: dict[str, Any]) -> str:
    output = run.get("output")
    if not isinstance(output, dict):
        return ""
    return clip("\n".join(str(output.get(k)) for k in ("title", "summary") if output.get(k)))


class Ci(GithubClient):
    """The CI half of :class:`~leviathan_lib.forge.github.GithubForge`."""

    def ci_status(self, sha: str) -> CiStatus:
        base = f"/repos/{self.owner}/{self.repo}/commits/{quote(sha, safe='')}"
        combined = self._get(f"{base}/status", READ_STATUSES, {"per_page": PER_PAGE})
        runs = self._get(f"{base}/check-runs", READ_CHECKS, {"per_page": PER_PAGE})
        statuses = [s for s in combined.get("statuses") or [] if isinstance(s, dict)]
        check_runs = [r for r in runs.get("check_runs") or [] if isinstance(r, dict)]
        checks = [CiCheck(name=clip(str(s.get("context") or "status"))[:200],
                          state=_STATUS_STATES.get(str(s.get("state")), "pending"),
                          summary=clip(s.get("description"))) for s in statuses]
        checks += [CiCheck(name=clip(str(r.get("name") or "check run"))[:200], state=_run_state(r),
                           summary=_run_summary(r)) for r in check_runs]
        complete = (int(combined.get("total_count") or 0) <= len(statuses)
                    and int(runs.get("total_count") or 0) <= len(check_runs))
        return ci_status(sha, checks, complete=complete)
