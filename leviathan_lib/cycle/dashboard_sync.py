"""Write the dashboard issue at the end of ``plan``'s decision: only when its content changed, at most once.

Rules (docs/pull-requests.md "Dashboard"):

- unchanged content (the hash the ledger holds): no forge request at all;
- the issue's number is kept in the ledger; the PR sync reads it only for ticked boxes (:mod:`.ticks`); here
  the hash of the body Leviathan wrote is compared with the body there now, to record an overwritten edit;
- closed by a human: never reopened and not written (``dashboard_closed``); reopened: written again;
- gone (deleted, 404/410): a new one is created once (``replaced``);
- no number yet (first cycle, or the answer to a create was lost): first look for an open issue with the
  title and the ``leviathan-dashboard`` label, so a retry never makes a second one;
- any forge error: ``dashboard_update_failed`` with the forge's code; the cycle decides as it would have.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime

from leviathan_lib.contracts.xcom import GuardrailResult, ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import LeviathanError
from leviathan_lib.core.names import DASHBOARD_LABEL
from leviathan_lib.cycle.dashboard import Dashboard, render
from leviathan_lib.evidence.records import ApprovalEvidence, DashboardAction, DashboardState
from leviathan_lib.forge.base import Forge, IssueNotFound

log = logging.getLogger("leviathan")

FAILED = "dashboard_update_failed"


def next_cycle(cron: str, after: datetime) -> datetime | None:
    """When ``cron`` fires next after ``after`` (UTC), or None when croniter cannot tell."""
    try:
        from croniter import croniter

        result: datetime = croniter(cron, after).get_next(datetime)
    except Exception:  # noqa: BLE001 — a schedule croniter cannot read is shown as "unknown"
        return None
    return result


def sync_dashboard(target: TargetConfig, read: ReadResult, result: GuardrailResult, *, run_id: str,
                   written_at: datetime, open_forge: Callable[[], Forge],
                   rejection: ApprovalEvidence | None = None) -> DashboardAction | None:
    """Bring the dashboard up to date for this cycle; None when it is off, a replay, or unchanged.

    ``written_at`` is the run's own time (not the clock), so a retried ``plan`` renders the same body and
    writes nothing new. ``rejection``: the approval gate's rejection, after ``plan`` wrote it (``result.dashboard``
    is then what ``plan`` did): the rejected task shows as waiting, no longer as selected.
    """
    if not target.dashboard or result.replay or read.as_of is not None:
        return None
    dashboard = render(target, read, result, run_id=run_id, now=written_at,
                       next_cycle=next_cycle(target.effective_schedule, written_at), rejection=rejection)
    state = result.ledger.dashboard.after(result.dashboard)
    if state.number is not None and state.content_hash == dashboard.content_hash:
        return None
    try:
        action = _write(open_forge(), state, dashboard)
    except LeviathanError as exc:
        log.warning("dashboard of %s not updated: %s: %s", target.target_id, exc.code, exc.message)
        return DashboardAction(kind=FAILED, number=state.number, content_hash=dashboard.content_hash,
                               error_code=exc.code, detail=exc.message[:500])
    except Exception as exc:  # noqa: BLE001 — the dashboard is never a reason to fail or skip a cycle
        log.warning("dashboard of %s not updated: %s: %s", target.target_id, type(exc).__name__, exc)
        return DashboardAction(kind=FAILED, number=state.number, content_hash=dashboard.content_hash,
                               error_code=type(exc).__name__, detail=str(exc)[:500])
    log.info("dashboard of %s: %s #%s %s", target.target_id, action.kind, action.number, action.detail)
    return action


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _written(kind: str, number: int, dashboard: Dashboard, **extra: object) -> DashboardAction:
    return DashboardAction.model_validate({"kind": kind, "number": number, "content_hash": dashboard.content_hash,
                                           "body_sha256": dashboard.body_sha256, **extra})


def _write(forge: Forge, state: DashboardState, dashboard: Dashboard) -> DashboardAction:
    replaced = None
    if state.number is not None:
        try:
            current = forge.get_issue(state.number)
        except IssueNotFound:
            replaced = state.number
        else:
            if current.state == "closed":
                return DashboardAction(kind="dashboard_closed", number=current.number,
                                       content_hash=dashboard.content_hash,
                                       detail="closed by a human: left closed and not written; reopen it to resume")
            edited = state.body_sha256 is not None and _sha(current.body) not in (state.body_sha256,
                                                                                  dashboard.body_sha256)
            if current.body != dashboard.body or current.title != dashboard.title:
                forge.update_issue(current.number, title=dashboard.title, body=dashboard.body)
            detail = "someone edited it; overwritten (the body is Leviathan's)" if edited else ""
            return _written("dashboard_updated", current.number, dashboard, overwrote_edit=edited, detail=detail)
    found = forge.find_issue(title=dashboard.title, label=DASHBOARD_LABEL)
    gone = f"issue #{replaced} is gone; " if replaced else ""
    if found is not None:
        forge.update_issue(found.number, title=dashboard.title, body=dashboard.body)
        return _written("dashboard_updated", found.number, dashboard, replaced=replaced,
                        detail=f"{gone}took over #{found.number}, which an earlier try created")
    issue = forge.create_issue(title=dashboard.title, body=dashboard.body, label=DASHBOARD_LABEL)
    return _written("dashboard_created", issue.number, dashboard, replaced=replaced,
                    detail=f"{gone}created #{issue.number}")
