"""What the Leviathan view shows about one target, read from Airflow's state and the target's repository.

Every read is bounded: the evidence of a chosen period, newest first and at most :data:`MAX_PERIOD_ROWS`
records (``truncated`` says when the bound was hit); the backlog is read at the commit the newest cycle
pinned, once per commit (:func:`texts_at_commit`), and judged by the one decision builder
(:func:`leviathan_lib.cycle.decision.build_decision`) on the ledger that record carries, in a worker
thread given :data:`BACKLOG_SECONDS`. Whatever cannot be read is returned as
``unknown: <reason>`` text, never raised: the page always renders. The forge's API is never called here
(PR states are the ones cycles recorded); only a local forge's PR record is opened, for its PR page.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from leviathan_lib.contracts.xcom import CycleError, ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.names import (
    AUTONOMY_ASSET_URI,
    LEGACY_AUTONOMY_ASSET_URI,
    OUTSIDE_CHANGES_ASSET_URI,
    evidence_asset_uri,
)
from leviathan_lib.core.read_limits import MAX_BACKLOG_BYTES, MAX_RECIPES_BYTES, TooLarge
from leviathan_lib.core.repo_url import parse_repo_url
from leviathan_lib.core.secrets_scan import redact_text
from leviathan_lib.cycle.approval import rejected_text
from leviathan_lib.cycle.check import history_error, pr_continuation
from leviathan_lib.cycle.decision import (
    DecisionInputs,
    SandboxSeen,
    build_decision,
    ledger_open_prs,
    state_from_ledger,
)
from leviathan_lib.cycle.held import ledger_fix
from leviathan_lib.cycle.repo_reader import RepoUnreachable
from leviathan_lib.evidence.records import CycleRecord, History, Ledger, LifecycleAction, parse_records

log = logging.getLogger(__name__)

#: Newest records read for one target's period (about 70 days of 5-minute cycles).
MAX_PERIOD_ROWS = 20_000
#: Switch changes read for one target's period (global and this target's).
MAX_SWITCH_ROWS = 500
#: Longest the page waits for the backlog at the newest cycle's commit (a fetch the first time, then parse).
BACKLOG_SECONDS = 20.0
PERIODS = (7, 30, 90)
PAGE_SIZE = 50
#: Largest local-forge PR diff shown on its page.
MAX_DIFF_CHARS = 200_000


def next_runs(dag_ids: list[str]) -> dict[str, datetime | None]:
    """When the scheduler will next create each DAG's run (absent: the DAG was never parsed)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    if not dag_ids:
        return {}
    with create_session() as session:
        rows = session.execute(select(DagModel.dag_id, DagModel.next_dagrun_create_after)
                               .where(DagModel.dag_id.in_(dag_ids)))
        return {dag_id: when for dag_id, when in rows}


def _rows_newest_first(uri: str, since: datetime, limit: int) -> list[tuple[int, datetime, str | None, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (
        select(AssetEvent.id, AssetEvent.timestamp, AssetEvent.source_run_id, AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.uri == uri, AssetEvent.timestamp >= since)
        .order_by(AssetEvent.id.desc())
        .limit(limit)
    )
    with create_session() as session:
        return [tuple(row) for row in session.execute(query).all()]


class RecordRow(BaseModel):
    """One evidence record (or switch change) as the view lists it, newest first."""

    row_id: int
    at: datetime
    kind: Literal["cycle", "breaker_reset", "autonomy_changed", "unreadable"]
    run_id: str | None = None
    decision: str | None = None
    stopped_reason: str | None = None
    detail: str = ""
    reasons: list[str] = Field(default_factory=list)
    selected_task: str | None = None
    replay: bool = False


class AttemptRow(BaseModel):
    run_id: str
    task_id: str
    attempt: int
    outcome: str | None
    error: str | None = None
    branch: str
    pr_number: int | None = None
    pr_url: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The repository's own checks: name, status on the pinned commit, status on the change (``-``: not run).
    checks: list[tuple[str, str, str]] = Field(default_factory=list)


class PrRow(BaseModel):
    number: int
    task_id: str
    branch: str
    state: Literal["open", "merged", "closed"]
    url: str | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    #: From the first cycle of the period that saw the task ready to the cycle that saw the PR merged.
    lead_time_hours: float | None = None
    #: CI on its head as the newest cycle read it (None: not read in the period), the failing checks (or why
    #: it is unknown) and their report: untrusted text, escaped by the template.
    ci_state: str | None = None
    ci_sha: str | None = None
    ci_detail: str = ""
    ci_report: str | None = None
    #: A merged PR a later commit reverted: when a cycle saw it.
    reverted_at: datetime | None = None


class Series(BaseModel):
    """Per-day counts over the period, oldest day first, for the charts."""

    days: list[date]
    cycles: dict[str, list[int]]
    attempts: dict[str, list[int]]
    prs: dict[str, list[int]]


class Activity(BaseModel):
    records: list[RecordRow]
    attempts: list[AttemptRow]
    prs: list[PrRow]
    series: Series
    unreadable: int
    truncated: bool
    ledger: Ledger | None
    history: History


def _unreadable_problem(extra: Any) -> str | None:
    """Why a row cannot be read as a record (None: it can)."""
    history = parse_records([(None, extra)])
    return history.unreadable[0].problem if history.unreadable else None


def _record_row(row_id: int, ts: datetime, run_id: str | None, extra: Any) -> RecordRow:
    at = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    problem = _unreadable_problem(extra)
    if problem is not None:
        return RecordRow(row_id=row_id, at=at, kind="unreadable", run_id=run_id, detail=problem)
    kind = extra.get("kind")
    if kind == "breaker_reset":
        return RecordRow(row_id=row_id, at=at, kind="breaker_reset",
                         detail=f"breaker reset by {extra.get('by')}: {extra.get('reason')}")
    if kind == "autonomy_changed":
        scope = "global switch" if extra.get("target_id") is None else "target"
        state = "on" if extra.get("enabled") else "off"
        return RecordRow(row_id=row_id, at=at, kind="autonomy_changed",
                         detail=f"{scope} {state} by {extra.get('by')}: {extra.get('reason')}")
    record = CycleRecord.model_validate(extra)
    return RecordRow(row_id=row_id, at=record.recorded_at, kind="cycle", run_id=record.dag_run_id,
                     decision=record.decision, stopped_reason=record.stopped_reason,
                     detail=record.stopped_detail, reasons=record.reasons, selected_task=record.selected_task,
                     replay=record.replay)


def pr_link(target: TargetConfig | None, number: int, recorded: str | None) -> str | None:
    """Where a person can open a PR: the forge's page (https), else None (a local forge: the view's own page)."""
    if recorded and recorded.startswith("https://"):
        return recorded
    if target is not None and target.forge == "github":
        try:
            parsed = parse_repo_url(target.target_repo_url)
        except ValueError:
            return None
        if parsed.kind == "https" and parsed.host and parsed.path.strip("/"):
            return f"https://{parsed.host}/{parsed.path.strip('/').removesuffix('.git')}/pull/{number}"
    return None


def _series(cycles: list[CycleRecord], prs: list[PrRow], days: int, today: date) -> Series:
    first = today - timedelta(days=days - 1)
    index = {first + timedelta(days=i): i for i in range(days)}
    counts: dict[str, dict[str, list[int]]] = {
        "cycles": {k: [0] * days for k in ("run", "skip", "error")},
        "attempts": {k: [0] * days for k in ("succeeded", "failed", "timed_out", "rejected_by_guardrail")},
        "prs": {k: [0] * days for k in ("opened", "merged", "closed")},
    }
    for record in cycles:
        day = index.get(record.recorded_at.astimezone(UTC).date())
        if day is None:
            continue
        counts["cycles"][record.decision][day] += 1
        outcome = record.attempt.outcome if record.attempt else None
        if outcome in counts["attempts"]:
            counts["attempts"][outcome][day] += 1
    for pr in prs:
        for key, when in (("opened", pr.opened_at), (pr.state, pr.closed_at)):
            slot = index.get(when.astimezone(UTC).date()) if when else None
            if slot is not None and key in counts["prs"]:
                counts["prs"][key][slot] += 1
    return Series(days=list(index), **counts)


def _prs(target: TargetConfig | None, cycles: list[CycleRecord]) -> list[PrRow]:
    """PRs opened or closed in the period (oldest cycle first in ``cycles``), newest first."""
    ready_since: dict[str, datetime] = {}
    prs: dict[int, PrRow] = {}
    for record in cycles:
        for verdict in record.tasks:
            ready_since.setdefault(verdict.id, record.recorded_at)
        attempt = record.attempt
        if attempt and attempt.pr_number is not None and attempt.continued_pr is None:
            prs[attempt.pr_number] = PrRow(number=attempt.pr_number, task_id=attempt.task_id, branch=attempt.branch,
                                           state="open", url=pr_link(target, attempt.pr_number, attempt.pr_url),
                                           opened_at=attempt.finished_at or record.recorded_at)
        for action in record.lifecycle:
            _with_action(target, prs, action, record.recorded_at)
        for change in record.pr_sync:
            pr = prs.get(change.number) or PrRow(number=change.number, task_id=change.task_id, branch=change.branch,
                                                 state="open", url=pr_link(target, change.number, None))
            if change.state == "reverted":  # it stays a merged PR (the charts count it so), now reverted
                pr.state, pr.reverted_at = "merged", record.recorded_at
            else:
                pr.state, pr.closed_at = change.state, record.recorded_at
            since = ready_since.get(change.task_id)
            if change.state == "merged" and since is not None:
                pr.lead_time_hours = round((record.recorded_at - since).total_seconds() / 3600, 2)
            prs[change.number] = pr
    return sorted(prs.values(), key=lambda p: p.number, reverse=True)


def _with_action(target: TargetConfig | None, prs: dict[int, PrRow], action: LifecycleAction, at: datetime) -> None:
    """A PR opened once its CI passed (``pr_created``), or a new CI reading of an open PR's head."""
    if action.number is None:
        return
    if action.kind == "pr_created":
        prs[action.number] = PrRow(number=action.number, task_id=action.task_id, branch=action.branch, state="open",
                                   url=pr_link(target, action.number, None), opened_at=at)
    row = prs.get(action.number)
    if action.ci_state is not None and row is not None:
        row.ci_state, row.ci_sha, row.ci_detail = action.ci_state, action.head_sha, action.detail
        row.ci_report = action.feedback


def activity(target_id: str, target: TargetConfig | None, *, days: int, now: datetime | None = None) -> Activity:
    """The target's evidence and switch changes of the last ``days`` days, bounded and newest first (``target``:
    its config, None while its file is broken: PR links then only where the records hold them)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    rows = _rows_newest_first(evidence_asset_uri(target_id), since, MAX_PERIOD_ROWS + 1)
    truncated = len(rows) > MAX_PERIOD_ROWS
    rows = rows[:MAX_PERIOD_ROWS]
    switches = [r for uri in (AUTONOMY_ASSET_URI, OUTSIDE_CHANGES_ASSET_URI, LEGACY_AUTONOMY_ASSET_URI)
                for r in _rows_newest_first(uri, since, MAX_SWITCH_ROWS)
                if isinstance(r[3], dict) and r[3].get("target_id") in (None, target_id)]
    history = parse_records([(run_id, extra) for _, _, run_id, extra in reversed(rows)])
    records = sorted((_record_row(*row) for row in rows + switches), key=lambda r: r.at, reverse=True)
    cycles = [c for c in history.cycles if not c.replay]
    attempts = [AttemptRow(run_id=c.dag_run_id, task_id=c.attempt.task_id, attempt=c.attempt.attempt,
                           outcome=c.attempt.outcome, branch=c.attempt.branch, pr_number=c.attempt.pr_number,
                           pr_url=pr_link(target, c.attempt.pr_number, c.attempt.pr_url) if c.attempt.pr_number
                           else None, started_at=c.attempt.started_at, finished_at=c.attempt.finished_at,
                           error=" ".join(filter(None, (c.attempt.error_code, c.attempt.error_message))) or None,
                           checks=c.attempt.check_statuses())
                for c in reversed(cycles) if c.attempt is not None]
    prs = _prs(target, cycles)
    ledger = history.latest_ledger(exclude_run_id=None)
    return Activity(records=records, attempts=attempts, prs=prs, series=_series(cycles, prs, days, now.date()),
                    unreadable=len(history.unreadable), truncated=truncated, ledger=ledger, history=history)


class BacklogView(BaseModel):
    """The backlog at the branch tip and the guardrails' verdict on each task, or why it is unknown."""

    unknown: str | None = None
    commit_sha: str | None = None
    source: str = ""
    decision: str | None = None
    selected_task: str | None = None
    reasons: list[str] = Field(default_factory=list)
    checks: list[dict[str, Any]] = Field(default_factory=list)
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


#: Backlog and recipes texts read at one commit, newest use last: (repo, sha, backlog, recipes) → texts.
_AT_COMMIT: OrderedDict[tuple[str, str, str, str], tuple[str | None, str | None]] = OrderedDict()
#: Commits kept in :data:`_AT_COMMIT` (per API-server process).
AT_COMMIT_KEPT = 64
_AT_COMMIT_LOCK = threading.Lock()


def texts_at_commit(target: TargetConfig, repo_url: str, commit_sha: str) -> tuple[str | None, str | None]:
    """The backlog and recipes at a pinned commit, read once per commit per process: from the repository
    itself when local, else from this machine's mirror, fetched only when the commit is not there yet."""
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.repo_reader import read_at_commit, readable_commit

    key = (repo_url, commit_sha, target.backlog_path, target.recipes_path)
    with _AT_COMMIT_LOCK:
        if key in _AT_COMMIT:
            _AT_COMMIT.move_to_end(key)
            return _AT_COMMIT[key]
    git_dir = readable_commit(repo_url, commit_sha, paths.cache_dir())
    texts = (read_at_commit(git_dir, commit_sha, target.backlog_path, max_bytes=MAX_BACKLOG_BYTES,
                            code="backlog_too_large"),
             read_at_commit(git_dir, commit_sha, target.recipes_path, max_bytes=MAX_RECIPES_BYTES,
                            code="recipes_too_large"))
    with _AT_COMMIT_LOCK:
        _AT_COMMIT[key] = texts
        while len(_AT_COMMIT) > AT_COMMIT_KEPT:
            _AT_COMMIT.popitem(last=False)
    return texts


def _newest_cycle(history: History) -> CycleRecord | None:
    """The newest cycle that acted (never a replay) and pinned a commit."""
    return next((c for c in reversed(history.cycles) if not c.replay and c.commit_sha), None)


def _sandbox_seen(record: CycleRecord) -> SandboxSeen | None:
    """The sandbox check the newest cycle's worker machine made (None: it made none; probe here)."""
    check = next((c for c in record.checks if c.name == "sandbox"), None)
    if check is None:
        return None
    return SandboxSeen(problem=None if check.passed else check.detail,
                       label=check.detail.removeprefix("recipe steps run in: ") if check.passed else "bwrap")


def decision_inputs(target: TargetConfig, config_path: Path, history: History, ledger: Ledger, *,
                    global_autonomy: bool, now: datetime) -> DecisionInputs | str:
    """What a cycle starting now would decide on, as far as the evidence tells: the backlog at the commit the
    newest cycle pinned, its ledger (the open PRs and the review feedback still pending on them: the forge is
    not asked) and its sandbox check; or why it is unknown."""
    newest = _newest_cycle(history)
    if newest is None or newest.commit_sha is None:
        return "no cycle has pinned a commit yet: the backlog is read at the commit the next cycle pins"
    url = target.repo_location(config_path)
    read = ReadResult(repo_url=url, branch=target.target_branch, backlog_path=target.backlog_path,
                      commit_sha=newest.commit_sha)
    try:
        read.backlog_text, read.recipes_text = texts_at_commit(target, url, newest.commit_sha)
    except ValidationFailed as exc:
        read.error = CycleError(code="backlog_invalid", message="; ".join(str(p) for p in exc.problems))
    except (RepoUnreachable, TooLarge) as exc:
        read.error = CycleError(code=exc.code, message=exc.message)
    if read.error is None and history.unreadable:  # the cycle stops on them too (fails closed)
        read.error = history_error(history)
    if read.backlog_text is None and read.error is None:
        read.error = CycleError(code="backlog_missing", message=f"{target.backlog_path} does not exist at "
                                                                f"{newest.commit_sha[:12]}")
    state = state_from_ledger(ledger, global_autonomy=global_autonomy, now=now, open_prs=ledger_open_prs(ledger),
                              commit_sha=newest.commit_sha)
    continue_pr, _ = pr_continuation(target, ledger, [], {pr.number: pr.head_sha for pr in ledger.open_prs})
    continue_pr = continue_pr or ledger_fix(target, ledger.held_branches, dict(ledger.failures))
    from leviathan_lib.control.fleet_limits import fleet_for

    return DecisionInputs(target=target, read=read, state=state, continue_request=continue_pr,
                          sandbox=_sandbox_seen(newest), fleet=fleet_for(target, now) if read.error is None else None)


def _verdicts(target: TargetConfig, config_path: Path, history: History, ledger: Ledger,
              global_autonomy: bool) -> BacklogView:
    inputs = decision_inputs(target, config_path, history, ledger, global_autonomy=global_autonomy,
                             now=datetime.now(UTC))
    if isinstance(inputs, str):
        return BacklogView(unknown=inputs)
    read = inputs.read
    view = BacklogView(commit_sha=read.commit_sha, source=f"{target.target_branch}:{target.backlog_path}")
    result = build_decision(inputs)
    if result.error or result.decision is None:
        view.unknown = f"{result.error.code}: {result.error.message}" if result.error else "no decision"
        return view
    backlog, problems = read.parsed_backlog()
    titles = {t.id: t for t in backlog.tasks}
    decision = result.decision
    view.decision, view.selected_task = decision.decision, decision.task_id
    view.reasons = [str(r) for r in decision.reasons]
    view.checks = [c.model_dump() for c in decision.checks]
    view.problems = [str(p) for p in problems] or result.task_problems
    rejected = {r.task_id: rejected_text(r) for r in ledger.rejected}
    view.tasks = [{"id": v.id, "eligible": v.eligible, "reasons": [str(r) for r in v.reasons],
                   "title": titles[v.id].title if v.id in titles else "",
                   "status": titles[v.id].status if v.id in titles else None,
                   "rejected": rejected.get(v.id) if ReasonCode.REJECTED_BY_HUMAN in v.reasons else None}
                  for v in decision.tasks]
    return view


def backlog_view(target: TargetConfig, config_path: Path, history: History, ledger: Ledger | None, *,
                 global_autonomy: bool, timeout: float = BACKLOG_SECONDS) -> BacklogView:
    """:func:`_verdicts` within ``timeout`` seconds; a failure or a timeout is ``unknown: <reason>``."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="leviathan-view-backlog")
    future = pool.submit(_verdicts, target, config_path, history, ledger or Ledger(), global_autonomy)
    try:
        view = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        view = BacklogView(unknown=f"reading the backlog took longer than {timeout:g}s (the repository may be "
                                   "slow or unreachable)")
    except Exception as exc:  # noqa: BLE001 — any failure of the read is shown as unknown, never a 500
        log.warning("backlog view of %s failed: %s", target.target_id, exc)
        view = BacklogView(unknown=f"{type(exc).__name__}: {exc}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if view.unknown:
        view.unknown = redact_text(view.unknown)
    return view


class PrNote(BaseModel):
    """A review or a comment on a local-forge PR; ``own``: written by Leviathan itself (its replies)."""

    kind: Literal["review", "comment"]
    author: str
    at: datetime
    body: str
    state: str | None = None
    own: bool = False


class LocalPr(BaseModel):
    title: str
    body: str
    state: str
    head: str
    base: str
    created_at: datetime
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    merge_sha: str | None = None
    diff: str
    diff_truncated: bool = False
    #: Reviews and comments, oldest first.
    notes: list[PrNote] = Field(default_factory=list)


def local_pr(target: TargetConfig, config_path: Path, number: int) -> tuple[LocalPr | None, str | None]:
    """A local forge's PR record, diff, reviews and comments (token shapes redacted), or why it cannot be read."""
    from leviathan_lib.forge import open_forge
    from leviathan_lib.forge.base import ForgeError
    from leviathan_lib.forge.local import LEVIATHAN_LOGIN

    if target.forge != "local":
        return None, f"target {target.target_id!r} uses the {target.forge} forge: open the PR there"
    try:
        forge = open_forge("local", target.repo_location(config_path))
        pr = forge.get_pr(number)
        diff = forge.diff(number)  # type: ignore[attr-defined]
        notes = [PrNote(kind="review", author=r.author, at=r.submitted_at, body=redact_text(r.body), state=r.state,
                        own=r.author == LEVIATHAN_LOGIN) for r in forge.list_reviews(number)]
        notes += [PrNote(kind="comment", author=c.author, at=c.created_at, body=redact_text(c.body),
                         own=c.author == LEVIATHAN_LOGIN) for c in forge.list_comments(number)]
    except (ForgeError, OSError, ValueError) as exc:
        return None, f"unknown: the forge cannot be read: {redact_text(str(exc))}"
    return LocalPr(title=redact_text(pr.title), body=redact_text(pr.body), state=pr.state, head=pr.head, base=pr.base,
                   created_at=pr.created_at, merged_at=pr.merged_at, closed_at=pr.closed_at, merge_sha=pr.merge_sha,
                   diff=redact_text(diff[:MAX_DIFF_CHARS]), diff_truncated=len(diff) > MAX_DIFF_CHARS,
                   notes=sorted(notes, key=lambda n: n.at)), None
