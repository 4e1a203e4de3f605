"""Bodies of the cycle DAG's tasks: Airflow context in, :mod:`leviathan_lib.cycle` functions, XComs out.

Each body only reads the Airflow context (task instance, DAG run, XComs, Variables, asset events),
calls plain functions and pushes what they return; the decisions live in :mod:`leviathan_lib.cycle`.
Only the public Task SDK is used (no direct DB access). Heavy modules are imported inside the
functions so DAG parsing stays cheap.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import Asset, AssetAlias, Variable, get_current_context
from airflow.sdk.exceptions import AirflowFailException
from pydantic import JsonValue

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.names import (
    RECORD_TASK_IDS,
    SPIDER_URL_PREFIX,
    TASK_APPROVE_PLAN,
    TASK_APPROVE_PULL_REQUEST,
    TASK_CYCLE_OUTCOME,
    TASK_OPEN_PULL_REQUEST,
    TASK_PLAN,
    TASK_PREPARE_ATTEMPT,
    TASK_RUN_WORKER,
    TASK_SKIP,
    XCOM_APPROVAL,
    XCOM_GUARDRAILS,
    XCOM_PREPARED_AT,
    XCOM_READ,
    XCOM_RECORD,
    XCOM_REJECTION,
    XCOM_RETURN_VALUE,
    XCOM_SPEC,
    XCOM_TASK_LABEL,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from leviathan_lib.contracts.xcom import CycleError, GuardrailResult, ReadResult
    from leviathan_lib.core.fleet import FleetState
    from leviathan_lib.cycle.history import Event
    from leviathan_lib.evidence.records import ApprovalEvidence, AttemptEvidence, History, Ledger

log = logging.getLogger("leviathan")
_T = TypeVar("_T")
#: What crosses the XCom boundary and the DAG's task arguments: JSON, typed as such.
JsonObject = dict[str, JsonValue]
#: The worker outcome of an attempt that found the repository's checks already failing (no change, no failure).
RED_AT_BASE = "checks_red_at_base"  # ReasonCode.CHECKS_RED_AT_BASE, without importing the guardrails at parse time


def _connecting_once(func: Callable[..., _T]) -> Callable[..., _T]:
    """Run a task with one forge connection for all its steps (:func:`leviathan_lib.forge.connect_once`)."""

    @functools.wraps(func)
    def task(*args: Any, **kwargs: Any) -> _T:
        from leviathan_lib.forge import connect_once

        with connect_once():
            return func(*args, **kwargs)

    return task


def _target(config: dict[str, Any]) -> TargetConfig:
    return TargetConfig.model_validate(config, strict=False)


def _run_type(dag_run: Any) -> str:
    run_type = dag_run.run_type
    return str(getattr(run_type, "value", run_type))


def _read(target: TargetConfig, repo_url: str, dag_run: Any) -> ReadResult:
    """Pin a commit and read the backlog there (a replay reads it as it was at the run's logical date)."""
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.read import read_with_forge_auth
    from leviathan_lib.cycle.replay import replay_time

    as_of = replay_time(_run_type(dag_run), getattr(dag_run, "logical_date", None), datetime.now(UTC))
    if as_of:
        log.info("replay: reading the backlog as it was at %s; nothing will run or be pushed", as_of.isoformat())
    result = read_with_forge_auth(target, repo_url, paths.cache_dir(), as_of=as_of)
    if result.error:
        log.error("cannot read the backlog of %s: %s: %s", target.target_id, result.error.code, result.error.message)
    else:
        log.info("read %s at %s (%s)", result.backlog_path, result.commit_sha, result.branch)
        for problem in result.problems:
            log.warning("invalid backlog task (it will not run): %s", problem)
    return result


def _global_switch(name: str, accessors: Any, switches: Asset) -> tuple[bool, str]:
    """The global autonomy switch: the Variable and the newest change recorded on ``switches``; anything that
    cannot be read is unknown, so the switch is off."""
    from leviathan_lib.evidence.switches import NEWEST_SWITCH_EVENTS, global_state

    try:
        raw = Variable.get(name, default=None)
        if raw is None or str(raw).strip().lower() != "true":
            return global_state(raw, [])  # off whatever the record says: no need to read it
        reads = ([e.extra for e in accessors[switches].ascending(False).limit(n)] for n in NEWEST_SWITCH_EVENTS)
        return global_state(raw, reads)  # the wider read only when the newest events hold no global change
    except Exception as exc:  # noqa: BLE001 — the switch is unknown: fail closed
        return False, f"cannot read the switch ({name} or its recorded changes): {type(exc).__name__}"


#: Newest-events reads ask for events after now minus each of these first: Airflow's inlet-events query
#: sorts by timestamp across a join, so PostgreSQL reads every event of the asset unless a lower bound
#: narrows its (asset_id, timestamp) index range. The history asks for the last
#: :data:`~leviathan_lib.cycle.history.NEWEST_WITHIN` before any of these; the last read has no bound, so
#: nothing is ever cut off.
WIDENING = (timedelta(days=2), timedelta(days=30), None)


class _InletEvents:
    """Airflow's inlet events of the evidence asset, as a :class:`~leviathan_lib.cycle.history.EventSource`.

    Each read takes a fresh accessor (``inlet_events[asset]`` builds one): an accessor keeps the order,
    limit and bounds of its last use, so a later full read on the same one would see only those events.
    """

    def __init__(self, accessors: Any, asset: Asset) -> None:
        self._accessors, self._asset = accessors, asset

    def newest(self, limit: int) -> list[Event]:
        found: list[Event] = []
        for within in WIDENING:
            found = self.recent(limit, within) if within is not None else self._read(limit, None)
            if len(found) >= limit:
                break
        return found

    def recent(self, limit: int, within: timedelta) -> list[Event]:
        return self._read(limit, datetime.now(UTC) - within)

    def _read(self, limit: int, after: datetime | None) -> list[Event]:
        events = self._accessors[self._asset].ascending(False).limit(limit)
        if after is not None:
            events = events.after(after.isoformat())
        return [(e.source_run_id, e.extra) for e in events]

    def everything(self) -> Iterable[Event]:
        return ((e.source_run_id, e.extra) for e in self._accessors[self._asset])


class _AnyAsset:
    """Inlet-event accessors for any asset by name and URI (the other targets' evidence, the fleet breaker), as
    ``inlet_events`` has for the task's declared inlets; the Task SDK's events API reads any asset."""

    def __getitem__(self, asset: Asset) -> Any:
        from airflow.sdk.execution_time.context import InletEventsAccessor

        return InletEventsAccessor(asset_name=asset.name, asset_uri=asset.uri)


def _fleet(target: TargetConfig, targets_dir: str, now: datetime) -> FleetState:
    """The fleet state for this decision: the fleet file and every target's newest evidence in the target
    file's folder (fails closed)."""
    from leviathan_lib.core import target_scan
    from leviathan_lib.core.errors import LeviathanError
    from leviathan_lib.core.fleet import FleetState, load_fleet
    from leviathan_lib.core.names import FLEET_BREAKER_ASSET_NAME, FLEET_BREAKER_ASSET_URI
    from leviathan_lib.cycle.fleet import newest_evidence, read_fleet
    from leviathan_lib.evidence.switches import NEWEST_FLEET_RESETS, newest_fleet_reset
    from leviathan_lib.orchestrator.dag_factory import evidence_asset

    try:
        config = load_fleet(Path(targets_dir))
        entries = target_scan.scan(Path(targets_dir))
    except (LeviathanError, OSError) as exc:
        why = "; ".join(str(exc).splitlines())
        return FleetState(unknown=f"the fleet file or the targets folder cannot be read: {why}"[:300])
    targets = {tid: files[0].target if len(files) == 1 else None
               for tid, files in target_scan.by_target(entries).items()}
    targets[target.target_id] = target
    accessors = _AnyAsset()

    def evidence_of(tid: str) -> tuple[History, Ledger]:
        return newest_evidence(_InletEvents(accessors, evidence_asset(tid)))

    def reset_at() -> datetime | None:
        breaker = Asset(name=FLEET_BREAKER_ASSET_NAME, uri=FLEET_BREAKER_ASSET_URI)
        record = newest_fleet_reset([e.extra for e in accessors[breaker].ascending(False).limit(NEWEST_FLEET_RESETS)])
        return record.reset_at if record else None

    return read_fleet(target, targets, config=config, evidence_of=evidence_of, reset_at=reset_at, now=now)


@_connecting_once
def plan(*, config: JsonObject, repo_url: str, asset: Asset, alias: AssetAlias, switch_variable: str,
         switches: Asset, targets_dir: str, run_task_id: str = TASK_RUN_WORKER) -> list[str]:
    """Read, check, branch; a cycle that will not attempt is recorded here, so it costs this one process.

    The record of a skip is emitted through ``alias`` (the task's only outlet): an alias outlet yields an
    asset event only for what the task adds to it, so a ``plan`` that chose an attempt emits nothing and
    ``record_evidence`` writes that cycle's single record. A skip for an error branches to
    ``cycle_outcome``, which fails the run; a plain skip follows only the ``skip`` EmptyOperator.
    A plain skip pushes no XCom of its own (its record is the asset event), an error skip the record for
    ``cycle_outcome``; the read and the guardrail result are pushed for the tasks that use them: the
    attempt's, and ``record_evidence`` when ``plan`` fails after its read.
    """
    from leviathan_lib.cycle.check import check_cycle
    from leviathan_lib.cycle.history import history_window
    from leviathan_lib.cycle.outcome import cycle_failure

    context = get_current_context()
    ti, run_id = context["ti"], context["run_id"]
    target = _target(config)
    read = _read(target, repo_url, context["dag_run"])
    read_xcom = read.model_dump(mode="json")  # as read: check_cycle may add the history's error to it
    result: GuardrailResult | None = None
    try:
        window = history_window(_InletEvents(context["inlet_events"], asset), run_id, read.as_of)
        enabled, switch_detail = _global_switch(switch_variable, context["inlet_events"], switches)
        result = check_cycle(target, read, history=window.history, ledger=window.ledger, run_id=run_id,
                             repo_url=repo_url, global_autonomy=enabled, totals=window.totals,
                             fleet_reader=None if read.as_of else lambda: _fleet(target, targets_dir,
                                                                                 datetime.now(UTC)))
        _log_decision(result, read, switch_detail)
        result.dashboard = _dashboard(target, read, result, run_id=run_id, dag_run=context["dag_run"],
                                      repo_url=repo_url)
        if result.attempt:
            _push_plan(ti, read_xcom, result)
            return [run_task_id]  # and every task after it: Airflow follows its descendants

        def emit(payload: dict[str, Any]) -> None:
            context["outlet_events"][alias].add(asset, extra=payload)

        record = _write_record(target, read=read, guard=result, attempt=None, failure=None, emit=emit, xcom=False)
    except BaseException:  # a timeout too
        _push_plan(ti, read_xcom, result)  # record_evidence records the failure with what plan had
        raise
    if cycle_failure(record):
        ti.xcom_push(key=XCOM_RECORD, value=record)  # for cycle_outcome, which fails the run with its reason
        return [TASK_CYCLE_OUTCOME]
    return [TASK_SKIP]


def _dashboard(target: TargetConfig, read: ReadResult, result: GuardrailResult, *, run_id: str, dag_run: Any,
               repo_url: str, rejection: ApprovalEvidence | None = None) -> Any:
    """The dashboard issue, brought up to date once per cycle (``dashboard: true``), and again by an approval
    gate's rejection; never fails the cycle."""
    if not target.dashboard:
        return None
    from leviathan_lib.cycle.dashboard_sync import sync_dashboard
    from leviathan_lib.forge import target_forge

    written_at = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return sync_dashboard(target, read, result, run_id=run_id, written_at=written_at, rejection=rejection,
                          open_forge=lambda: target_forge(target, repo_url))


def _push_plan(ti: Any, read_xcom: dict[str, Any], result: GuardrailResult | None) -> None:
    ti.xcom_push(key=XCOM_READ, value=read_xcom)
    if result is not None:
        ti.xcom_push(key=XCOM_GUARDRAILS, value=result.model_dump(mode="json"))


def _log_decision(result: GuardrailResult, read: Any, switch_detail: str) -> None:
    if result.replay:
        log.info("replay of %s: recorded only, nothing runs", read.as_of)
    if result.decision:
        for check in result.decision.checks:
            log.info("check %-16s %s  %s", check.name, "pass" if check.passed else "FAIL", check.detail)
        for verdict in result.decision.tasks:
            if not verdict.eligible:
                log.info("task %s not eligible: %s", verdict.id, ", ".join(verdict.reasons))
        for problem in result.task_problems:
            log.warning("invalid task entry (it will not run): %s", problem)
        log.info("decision: %s %s %s (global switch: %s)", result.decision.decision,
                 result.decision.task_id or "", ",".join(result.decision.reasons), switch_detail)
    elif result.error:
        log.error("cycle stopped before the guardrails: %s: %s", result.error.code, result.error.message)


def _guardrails(ti: Any) -> GuardrailResult | None:
    """The guardrails ``plan`` pushed, through their versioned reader (a named error, never a traceback)."""
    from leviathan_lib.contracts.xcom import GUARDRAILS_READER, read_xcom

    raw = ti.xcom_pull(task_ids=TASK_PLAN, key=XCOM_GUARDRAILS)
    return read_xcom(GUARDRAILS_READER, raw) if raw else None


def _planned_read(ti: Any) -> ReadResult | None:
    """The read ``plan`` pushed (None when ``plan`` failed before its read)."""
    from leviathan_lib.contracts.xcom import READ_READER, read_xcom

    raw = ti.xcom_pull(task_ids=TASK_PLAN, key=XCOM_READ)
    return read_xcom(READ_READER, raw) if raw else None


def _required_read(ti: Any) -> ReadResult:
    read = _planned_read(ti)
    if read is None:
        raise AirflowFailException(f"{TASK_PLAN} left no read")
    return read


def _planned(ti: Any) -> GuardrailResult:
    """The guardrail result of a run that chose an attempt (the worker tasks run only then)."""
    guard = _guardrails(ti)
    if guard is None or guard.attempt is None:
        raise AirflowFailException(f"{TASK_PLAN} planned no attempt")
    return guard


def _attempt_spec(read: ReadResult, target: TargetConfig, guard: GuardrailResult, llm_conn: Any = None, *,
                  git_env: dict[str, str] | None = None) -> Any:
    """The attempt spec; the model connection (``orchestrator.llm_conn``) gives the llm executor its host."""
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.attempt_spec import attempt_spec
    from leviathan_lib.orchestrator.caps import attempt_caps

    assert guard.attempt is not None
    return attempt_spec(read, target, guard.attempt, paths.cache_dir(),
                        api_base_url=llm_conn.base_url if llm_conn else None,
                        region=llm_conn.region if llm_conn else None, git_env=git_env, caps=attempt_caps())


def _local_attempt_spec(read: ReadResult, target: TargetConfig, guard: GuardrailResult, llm_conn: Any,
                        started: datetime) -> tuple[Any, Any]:
    """The local backend's spec, or the failed result of a pinned commit this machine cannot fetch."""
    from leviathan_lib.contracts.attempt import failed_result
    from leviathan_lib.cycle.read import forge_git_env
    from leviathan_lib.cycle.repo_reader import RepoUnreachable
    from leviathan_lib.forge.base import ForgeError

    try:
        git_env = None if target.forge == "local" else forge_git_env(target, read.repo_url)
        return _attempt_spec(read, target, guard, llm_conn, git_env=git_env), None
    except (RepoUnreachable, ForgeError) as exc:
        return None, failed_result("clone_failed", f"cannot fetch the pinned commit on this machine: {exc}",
                                   started_at=started)


def _llm_connection(target: TargetConfig, plan: Any) -> Any:
    """The model connection when the task runs on the model (None for recipes, or when it is missing)."""
    if plan.recipe or target.executor != "llm":
        return None
    from leviathan_lib.orchestrator.llm_conn import read_llm_connection

    return read_llm_connection(target)


def _llm_needs_connection(target: TargetConfig) -> bool:
    from leviathan_lib.orchestrator.llm_conn import needs_connection

    return needs_connection(target)


def prepare_attempt(*, config: JsonObject) -> None:
    """Kubernetes backend: push the spec (and the task's label value) for the worker pod's templates."""
    from leviathan_lib.worker.backends.kubernetes import label_value

    ti = get_current_context()["ti"]
    guard = _planned(ti)
    plan = guard.attempt
    assert plan is not None
    target = _target(config)
    llm_conn = _llm_connection(target, plan)
    if llm_conn is not None and llm_conn.problem:
        # Never send the pod's key to the provider's default URL instead of the one the connection meant.
        raise AirflowFailException(f"llm_connection_invalid: {llm_conn.problem}")
    spec = _attempt_spec(_required_read(ti), target, guard, llm_conn)
    ti.xcom_push(key=XCOM_SPEC, value=spec.model_dump_json())
    ti.xcom_push(key=XCOM_TASK_LABEL, value=label_value(plan.task_id))
    ti.xcom_push(key=XCOM_PREPARED_AT, value=datetime.now(UTC).isoformat())
    log.info("attempt %s of task %s on branch %s (%s executor)", plan.attempt, plan.task_id, plan.branch,
             spec.executor.kind)


def run_worker(*, config: JsonObject) -> None:
    """Local backend: run the attempt on this machine, from a pinned commit this task fetched itself."""
    from leviathan_lib.contracts.attempt import STARTED_ANNOTATION

    ti = get_current_context()["ti"]
    target = _target(config)
    guard = _planned(ti)
    plan = guard.attempt
    assert plan is not None
    llm_conn = _llm_connection(target, plan)
    started = datetime.now(UTC)
    spec, failed = _local_attempt_spec(_required_read(ti), target, guard, llm_conn, started)
    if spec is not None:
        log.info("attempt %s of task %s on branch %s (%s executor)", plan.attempt, plan.task_id, plan.branch,
                 spec.executor.kind)
    result = failed or _run_local(spec, target, llm_conn, started)
    ti.xcom_push(key=XCOM_RETURN_VALUE,  # where the pod's result is too; pushed now, as the task may fail below
                 value={**result.model_dump(mode="json"), STARTED_ANNOTATION: started.isoformat()})
    if result.outcome == RED_AT_BASE:  # the repository's state, not a failure: the cycle records it, green
        log.warning("no change made: %s", result.error.message if result.error else RED_AT_BASE)
        return
    if result.outcome != "succeeded":
        error = result.error
        raise AirflowFailException(
            f"worker {result.outcome}: {error.code if error else 'unknown'}: {error.message if error else ''}"
        )
    log.info("worker succeeded; changed paths: %s", ", ".join(result.changed_paths))


def _run_local(spec: Any, target: TargetConfig, llm_conn: Any, started: datetime) -> Any:
    from leviathan_lib.contracts.attempt import failed_result
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.untrusted import sanitize_result
    from leviathan_lib.worker.backends.local import run_local_worker

    if spec.executor.kind == "llm" and llm_conn is None and _llm_needs_connection(target):
        return failed_result("llm_connection_missing", f"the Airflow connection {target.llm_conn_id!r} "
                             "(llm_conn_id) does not exist; create it (type pydanticai: host = API base URL, "
                             "password = API key)", started_at=started)  # fmt: skip
    if spec.executor.kind == "llm" and llm_conn is not None and llm_conn.problem:
        return failed_result("llm_connection_invalid", llm_conn.problem, started_at=started)
    key = llm_conn.api_key if llm_conn else None
    return sanitize_result(run_local_worker(spec, workspace_root=paths.scratch_dir(), model_api_key=key,
                                            checks_cache=paths.checks_cache_dir()))


def sanitize_pod_result(raw: JsonValue) -> JsonObject:
    """Kubernetes backend: the pod's result document, sanitized before Airflow stores it as an XCom."""
    from leviathan_lib.cycle.untrusted import sanitize_result_document

    return sanitize_result_document(raw)


def _worker_result(ti: Any) -> dict[str, Any] | None:
    """The worker's result document: ``run_worker``'s ``return_value`` on both backends."""
    result: dict[str, Any] | None = ti.xcom_pull(task_ids=TASK_RUN_WORKER, key=XCOM_RETURN_VALUE)
    return result


@_connecting_once
def open_pull_request(*, config: JsonObject) -> JsonObject | None:
    from leviathan_lib.contracts.attempt import result_from_json
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.delivery import DeliveryRejected, deliver
    from leviathan_lib.forge import target_forge

    context = get_current_context()
    ti = context["ti"]
    target = _target(config)
    read_result = _required_read(ti)
    guard = _planned(ti)
    result = result_from_json(_worker_result(ti) or {})
    if result.outcome == RED_AT_BASE:
        log.info("nothing to deliver: the repository's checks already fail on the pinned commit")
        return None
    if result.outcome != "succeeded":  # a pod that ran reports a failed attempt as a successful task
        error = result.error
        detail = f"{error.code}: {error.message}" if error else "no error given"
        raise AirflowFailException(f"worker {result.outcome}: {detail}")
    forge = target_forge(target, read_result.repo_url)
    assert guard.attempt is not None and guard.decision is not None
    try:
        delivery = deliver(
            target, read_result, guard.attempt, result, forge, run_id=context["run_id"],
            scratch_dir=paths.scratch_dir(),
            evidence_summary={"target_id": target.target_id,
                              "checks": [c.model_dump() for c in guard.decision.checks],
                              **_body_links(target.target_id, context["dag_run"].dag_id, context["run_id"]),
                              "approval": approval.model_dump(mode="json") if (approval := _approval(ti)) else None},
        )
    except DeliveryRejected as exc:
        ti.xcom_push(key=XCOM_REJECTION,
                     value={"code": exc.code, "message": str(exc), "changed_paths": exc.changed_paths})
        raise AirflowFailException(f"delivery rejected: {exc.code}: {exc}") from None
    pr, held = delivery.pr, delivery.held
    changed: list[JsonValue] = list(delivery.changed_paths)
    if pr is None and held is not None:  # pr_creation: checks_pass: a later cycle opens it once CI passes
        log.info("pushed %s at %s; its PR opens once CI on it passes", guard.attempt.branch, held.head_sha)
        return {"number": None, "url": None, "branch": guard.attempt.branch, "head_sha": held.head_sha,
                "changed_paths": changed, "note": delivery.note, "awaiting_ci": True,
                "title": held.title, "body": held.body}
    assert pr is not None  # delivery returns a PR or a held branch
    log.info("pull request #%s %s (%s -> %s)", pr.number, pr.url, pr.head, pr.base)
    if delivery.note:
        log.warning("PR #%s: %s", pr.number, delivery.note)
    return {"number": pr.number, "url": pr.url, "branch": pr.head, "head_sha": pr.head_sha,
            "changed_paths": changed, "note": delivery.note}


def _body_links(target_id: str, dag_id: str, run_id: str) -> dict[str, str]:
    """The Leviathan view's target page and the Airflow run, when ``[api] base_url`` says where they are."""
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    if not base.startswith(("https://", "http://")):
        return {}
    return {"view_url": f"{base}{SPIDER_URL_PREFIX}/ui/targets/{quote(target_id)}",
            "run_url": f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"}


def _write_record(target: TargetConfig, *, read: ReadResult | None, guard: GuardrailResult | None,
                  attempt: AttemptEvidence | None, failure: CycleError | None,
                  emit: Callable[[dict[str, Any]], None], approval: ApprovalEvidence | None = None,
                  xcom: bool = True) -> dict[str, Any]:
    """Build the cycle's record, emit it as the evidence asset event and (``xcom``) push it as the ``record``
    XCom for ``cycle_outcome``."""
    from leviathan_lib.cycle.steps import build_record

    context = get_current_context()
    record = build_record(target, dag_run_id=context["run_id"], run_type=_run_type(context["dag_run"]),
                          read=read, guard=guard, attempt=attempt, failure=failure, approval=approval)
    payload = record.model_dump(mode="json")
    emit(payload)
    if xcom:
        context["ti"].xcom_push(key=XCOM_RECORD, value=payload)
    try:  # StatsD is best effort: it never fails the cycle
        from leviathan_lib.orchestrator.metrics import emit_cycle_safely

        emit_cycle_safely(record)
    except Exception:
        log.warning("could not emit Leviathan StatsD metrics", exc_info=True)
    log.info("cycle evidence: decision=%s stopped=%s %s", record.decision, record.stopped_reason,
             record.stopped_detail)
    return payload


def record_evidence(*, config: JsonObject, asset: Asset) -> JsonObject:
    """The record of a cycle that attempted, or whose ``plan`` failed (then with what it left, if anything)."""
    from leviathan_lib.contracts.xcom import CycleError
    from leviathan_lib.cycle.outcome import attempt_evidence

    context = get_current_context()
    ti = context["ti"]
    target = _target(config)
    read = _planned_read(ti)
    guard = _guardrails(ti)
    attempt = None
    failure = None
    if guard and guard.attempt:
        result = _worker_result(ti)
        prepared_at = None if result else ti.xcom_pull(task_ids=TASK_PREPARE_ATTEMPT, key=XCOM_PREPARED_AT)
        attempt = attempt_evidence(
            target, guard.attempt, result=result, pr=ti.xcom_pull(task_ids=TASK_OPEN_PULL_REQUEST),
            rejection=ti.xcom_pull(task_ids=TASK_OPEN_PULL_REQUEST, key=XCOM_REJECTION),
            prepared_at=prepared_at, now=datetime.now(UTC),
        )
    elif guard is None and read is not None and not read.error:
        failure = CycleError(code="guardrails_failed", message=f"{TASK_PLAN} failed (see its task log)")

    def emit(payload: dict[str, Any]) -> None:
        context["outlet_events"][asset].extra = payload

    return _write_record(target, read=read, guard=guard, attempt=attempt, failure=failure, emit=emit,
                         approval=_approval(ti))


def _approval(ti: Any) -> ApprovalEvidence | None:
    """The approval gate's decision, when the target has a gate and the cycle reached it."""
    from leviathan_lib.evidence.records import ApprovalEvidence

    for gate in (TASK_APPROVE_PLAN, TASK_APPROVE_PULL_REQUEST):
        raw = ti.xcom_pull(task_ids=gate, key=XCOM_APPROVAL)
        if raw:
            return ApprovalEvidence.model_validate(raw)
    return None


def cycle_outcome() -> str:
    """Mark the run failed when the cycle hit an error, so alerts on failed runs fire; skips stay green."""
    from leviathan_lib.cycle.outcome import cycle_failure

    ti = get_current_context()["ti"]
    record = next((found for task_id in RECORD_TASK_IDS if (found := ti.xcom_pull(task_ids=task_id, key=XCOM_RECORD))),
                  None)
    if not record:
        raise AirflowFailException("the cycle left no evidence record")
    failure = cycle_failure(record)
    if failure:
        raise AirflowFailException(failure)
    return str(record["stopped_reason"])


def config_invalid(*, target_id: str, problems: list[str], asset: Asset) -> JsonObject:
    """A broken target file's run: record ``config_invalid`` with the target's history carried forward (so the
    target continues where it was once fixed); ``cycle_outcome`` then fails the run."""
    from leviathan_lib.cycle.history import history_window
    from leviathan_lib.cycle.steps import config_invalid_record

    context = get_current_context()
    window = history_window(_InletEvents(context["inlet_events"], asset), context["run_id"], None)
    record = config_invalid_record(target_id, run_id=context["run_id"], run_type=_run_type(context["dag_run"]),
                                   problems=problems, ledger=window.ledger, totals=window.totals)
    payload = record.model_dump(mode="json")
    context["outlet_events"][asset].extra = payload
    context["ti"].xcom_push(key=XCOM_RECORD, value=payload)
    for problem in problems:
        log.error("invalid target file: %s", problem)
    try:  # StatsD is best effort: it never fails the cycle
        from leviathan_lib.orchestrator.metrics import emit_cycle_safely

        emit_cycle_safely(record)
    except Exception:
        log.warning("could not emit Leviathan StatsD metrics", exc_info=True)
    return payload


def config_error(problems: list[str]) -> None:
    raise AirflowFailException("invalid target file:\n" + "\n".join(problems))
