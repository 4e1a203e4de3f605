"""Bodies of the cycle DAG's tasks: Airflow context in, :mod:`leviathan_lib.cycle` steps, XComs out.

Only the public Task SDK is used (XCom, Variable, asset events); no direct DB access. Heavy modules
are imported inside the functions so DAG parsing stays cheap.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Variable, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from leviathan_lib.core.config import TargetConfig

log = logging.getLogger("leviathan")

#: Reason codes that mean "something is broken", not "nothing to do": the run is marked failed.
ERROR_OUTCOMES = {"failed", "timed_out", "rejected_by_guardrail"}
#: Runs whose logical date is older than this are replays (audit), never actions.
REPLAY_AFTER = timedelta(hours=1)


def _target(config: dict[str, Any]) -> TargetConfig:
    return TargetConfig.model_validate(config, strict=False)


def replay_time(dag_run) -> datetime | None:
    """A backfill run, or a run whose logical date is long past, replays instead of acting."""
    logical_date = getattr(dag_run, "logical_date", None)
    if logical_date is None:
        return None
    if _run_type(dag_run) == "backfill" or logical_date < datetime.now(UTC) - REPLAY_AFTER:
        return logical_date
    return None


def read_backlog(*, config: dict[str, Any], repo_url: str) -> dict[str, Any]:
    target = _target(config)
    as_of = replay_time(get_current_context()["dag_run"])
    if as_of:
        log.info("replay: reading the backlog as it was at %s; nothing will run or be pushed", as_of.isoformat())
    result = _read_with_forge_auth(target, repo_url, as_of)
    if result.error:
        log.error("cannot read the backlog of %s: %s: %s", target.target_id, result.error.code, result.error.message)
    else:
        log.info("read %s at %s (%s)", result.backlog_path, result.commit_sha, result.branch)
        for problem in result.problems:
            log.warning("invalid backlog task (it will not run): %s", problem)
    return result.model_dump(mode="json")


def _read_with_forge_auth(target: TargetConfig, repo_url: str, as_of: datetime | None):
    """Read the backlog, fetching with the forge's git credentials (private repositories need them)."""
    from leviathan_lib.core import paths
    from leviathan_lib.cycle import steps as cycle
    from leviathan_lib.forge import open_forge
    from leviathan_lib.forge.base import ForgeError

    git_env = None
    if target.forge != "local":
        try:
            git_env = open_forge(target.forge, repo_url, target.forge_conn_id).git_push_env()
        except ForgeError as exc:
            return cycle.ReadResult(repo_url=repo_url, branch=target.target_branch, backlog_path=target.backlog_path,
                                    as_of=as_of, error=cycle.CycleError(code="forge_state_unknown", message=str(exc)))
    return cycle.read_backlog(target, repo_url, paths.cache_dir(), as_of=as_of, git_env=git_env)


def _global_switch(name: str) -> tuple[bool, str]:
    """The global autonomy switch; a Variable that cannot be read is unknown, so the switch is off."""
    from leviathan_lib.core.autonomy import switch_state

    try:
        raw = Variable.get(name, default=None)
    except Exception as exc:  # the switch is unknown: fail closed
        return False, f"cannot read Variable {name}: {type(exc).__name__}"
    return switch_state(raw)


def _forge_state(target: TargetConfig, repo_url: str, known: list) -> tuple[list | None, list]:
    """Open agent/ PRs (None when the forge cannot be read) and the merges/closes since the last cycle."""
    from leviathan_lib.core.guardrails import OpenPR
    from leviathan_lib.evidence.records import PrStateChange
    from leviathan_lib.forge import open_forge
    from leviathan_lib.forge.base import ForgeError

    try:
        forge = open_forge(target.forge, repo_url, target.forge_conn_id)
        prs = forge.list_open_prs(head_prefix="agent/")
    except ForgeError as exc:
        log.error("forge state unknown for %s: %s", target.target_id, exc)
        return None, []
    open_numbers = {pr.number for pr in prs}
    changes = []
    for pr in known:
        if pr.number in open_numbers:
            continue
        try:
            current = forge.get_pr(pr.number)
            if current.state == "open":
                continue
            change = PrStateChange(number=pr.number, task_id=pr.task_id, branch=pr.branch, state=current.state,
                                   task_hash=pr.task_hash)
            if current.state == "closed":
                # The human said no: the agent/ branch goes; the task waits for a changed definition.
                forge.delete_branch(pr.branch)
                change.branch_deleted = True
            changes.append(change)
            log.info("PR #%s (%s) was %s by a human", pr.number, pr.task_id, current.state)
        except ForgeError as exc:
            log.warning("cannot sync PR #%s yet: %s", pr.number, exc)
    out = [OpenPR(number=pr.number, branch=pr.head, task_id=(pr.head.split("/") + [""])[1] or None)
           for pr in prs]
    return out, changes


def _replayed_open_prs(known: list) -> list:
    from leviathan_lib.core.guardrails import OpenPR

    return [OpenPR(number=pr.number, branch=pr.branch, task_id=pr.task_id) for pr in known]


#: Newest evidence events read per cycle; the newest record's ledger summarises everything older.
RECENT_EVENTS = 200


def _history(events, run_id: str, as_of: datetime | None):
    """The history the guardrails need: newest events and their ledger, or the full fold as a fallback."""
    from leviathan_lib.evidence.records import parse_records

    if as_of is None:
        recent = list(events.ascending(False).limit(RECENT_EVENTS))
        history = parse_records([(e.source_run_id, e.extra) for e in reversed(recent)])
        ledger = history.latest_ledger(exclude_run_id=run_id)
        if ledger is not None and not history.unreadable:
            return history, ledger
        if len(recent) < RECENT_EVENTS and not history.unreadable:
            return history, history.ledger(exclude_run_id=run_id)  # the whole history fits the window
    # Replays, old records without a ledger, or an unreadable window: fold everything (fails closed).
    history = parse_records([(e.source_run_id, e.extra) for e in events])
    return history, history.ledger(exclude_run_id=run_id, until=as_of)


def check_guardrails(read: dict[str, Any], *, config: dict[str, Any], repo_url: str, asset: Asset,
                     switch_variable: str, run_task_id: str = "run_worker") -> str:
    from leviathan_lib.core.guardrails import ClosedPR
    from leviathan_lib.cycle import steps as cycle

    context = get_current_context()
    target = _target(config)
    run_id = context["run_id"]
    read_result = cycle.ReadResult.model_validate(read)
    history, ledger = _history(context["inlet_events"][asset], run_id, read_result.as_of)
    if history.unreadable and not read_result.error:
        for bad in history.unreadable:
            log.error("unreadable evidence record from run %s: %s", bad.run_id, bad.problem)
        read_result.error = cycle.CycleError(
            code="history_unreadable",
            message=f"{len(history.unreadable)} evidence record(s) cannot be read; the breaker is treated as open",
        )
    enabled, switch_detail = _global_switch(switch_variable)
    pr_sync: list = []
    if read_result.error:
        open_prs = []
    elif read_result.as_of:
        open_prs = _replayed_open_prs(ledger.open_prs)
    else:
        open_prs, pr_sync = _forge_state(target, repo_url, ledger.open_prs)
        # A re-run of this task in the same DAG run ("clear"): the PR this run already opened is its own
        # attempt, not a reason to stop, so the re-run reaches the same branch and finds that PR again.
        own = {r.attempt.branch for r in history.cycles if r.dag_run_id == run_id and r.attempt}
        if open_prs and own:
            open_prs = [pr for pr in open_prs if pr.branch not in own]
    attempts, closed = cycle.guardrail_inputs(ledger)
    closed += [ClosedPR(task_id=c.task_id, task_hash=c.task_hash)
               for c in pr_sync if c.state == "closed" and c.task_hash]
    result = cycle.check_guardrails(
        target, read_result, global_autonomy=enabled, open_prs=open_prs, attempts=attempts,
        breaker_reset_at=ledger.breaker_reset_at, closed=closed,
    )
    result.ledger = ledger
    result.pr_sync = pr_sync
    if result.replay:
        log.info("replay of %s: recorded only, nothing runs", read_result.as_of)
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
    else:
        log.error("cycle stopped before the guardrails: %s: %s", result.error.code, result.error.message)
    context["ti"].xcom_push(key="guardrails", value=result.model_dump(mode="json"))
    return run_task_id if result.attempt else "skip"


def _guardrails(ti) -> Any:
    from leviathan_lib.cycle.steps import GuardrailResult

    raw = ti.xcom_pull(task_ids="check_guardrails", key="guardrails")
    return GuardrailResult.model_validate(raw) if raw else None


def _worker_source(target: TargetConfig, read) -> str:
    """Where the worker clones from. A local worker holds no credentials, so a forge that needs them
    (GitHub) is read through the mirror ``read_backlog`` already fetched, which holds the pinned commit. A
    pod cannot see that mirror: it clones the repository itself, with the optional read-only token
    (``worker_clone_secret``)."""
    if target.forge == "local" or target.worker_backend == "kubernetes":
        return read.repo_url
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.repo_reader import git_dir_for

    return str(git_dir_for(read.repo_url, paths.cache_dir()))


def _attempt_spec(read: dict[str, Any], target: TargetConfig, plan, llm_conn=None):
    """The attempt spec for ``plan``: the pinned commit, the task as read, the executor it needs (with the
    model connection's host and region, from :func:`~leviathan_lib.orchestrator.llm_conn.read_llm_connection`)."""
    from leviathan_lib.core.backlog import parse_backlog
    from leviathan_lib.cycle.steps import ReadResult
    from leviathan_lib.worker.contract import AttemptSpec
    from leviathan_lib.worker.llm_spec import executor_spec

    read_result = ReadResult.model_validate(read)
    backlog, _ = parse_backlog(read_result.backlog_text or "", source=read_result.backlog_path)
    task_def = backlog.by_id()[plan.task_id]
    return AttemptSpec.model_validate({
        "spec_version": 1, "target_id": target.target_id, "repo_url": _worker_source(target, read_result),
        "commit_sha": read_result.commit_sha, "task": task_def.model_dump(mode="json"),
        "allowed_path_prefixes": target.allowed_path_prefixes,
        "executor": executor_spec(target, task_def, api_base_url=llm_conn.base_url if llm_conn else None,
                                  region=llm_conn.region if llm_conn else None),
        "attempt": plan.attempt, "timeout_seconds": target.attempt_timeout_seconds,
    })


def _llm_connection(target: TargetConfig, plan) -> Any:
    """The model connection when the task runs on the model (None for recipes, or when it is missing)."""
    if plan.recipe or target.executor != "llm":
        return None
    from leviathan_lib.orchestrator.llm_conn import read_llm_connection

    return read_llm_connection(target)


def _llm_needs_connection(target: TargetConfig) -> bool:
    from leviathan_lib.orchestrator.llm_conn import needs_connection

    return needs_connection(target)


def prepare_attempt(read: dict[str, Any], *, config: dict[str, Any]) -> None:
    """Kubernetes backend: push the spec (and the task's label value) for the worker pod's templates."""
    from leviathan_lib.worker.backends.kubernetes import SPEC_XCOM_KEY, TASK_LABEL_XCOM_KEY, label_value

    ti = get_current_context()["ti"]
    plan = _guardrails(ti).attempt
    target = _target(config)
    llm_conn = _llm_connection(target, plan)
    if llm_conn is not None and llm_conn.problem:
        # Never send the pod's key to the provider's default URL instead of the one the connection meant.
        raise AirflowFailException(f"llm_connection_invalid: {llm_conn.problem}")
    spec = _attempt_spec(read, target, plan, llm_conn)
    ti.xcom_push(key=SPEC_XCOM_KEY, value=spec.model_dump_json())
    ti.xcom_push(key=TASK_LABEL_XCOM_KEY, value=label_value(plan.task_id))
    ti.xcom_push(key="prepared_at", value=datetime.now(UTC).isoformat())
    log.info("attempt %s of task %s on branch %s (%s executor)", plan.attempt, plan.task_id, plan.branch,
             spec.executor.kind)


def run_worker(read: dict[str, Any], *, config: dict[str, Any]) -> None:
    from leviathan_lib.worker.backends.local import run_local_worker

    context = get_current_context()
    ti = context["ti"]
    target = _target(config)
    plan = _guardrails(ti).attempt
    llm_conn = _llm_connection(target, plan)
    spec = _attempt_spec(read, target, plan, llm_conn)
    started = datetime.now(UTC)
    log.info("attempt %s of task %s on branch %s (%s executor)", plan.attempt, plan.task_id, plan.branch,
             spec.executor.kind)
    from leviathan_lib.core import paths

    if spec.executor.kind == "llm" and llm_conn is None and _llm_needs_connection(target):
        from leviathan_lib.worker.contract import failed_result

        result = failed_result("llm_connection_missing", f"the Airflow connection {target.llm_conn_id!r} "
                               "(llm_conn_id) does not exist; create it (type pydanticai: host = API base URL, "
                               "password = API key)", started_at=started)  # fmt: skip
    elif spec.executor.kind == "llm" and llm_conn is not None and llm_conn.problem:
        from leviathan_lib.worker.contract import failed_result

        result = failed_result("llm_connection_invalid", llm_conn.problem, started_at=started)
    else:
        key = llm_conn.api_key if llm_conn else None
        result = run_local_worker(spec, workspace_root=paths.scratch_dir(), model_api_key=key)
    ti.xcom_push(key="result", value={**result.model_dump(mode="json"), "attempt_started_at": started.isoformat()})
    if result.outcome != "succeeded":
        error = result.error
        raise AirflowFailException(
            f"worker {result.outcome}: {error.code if error else 'unknown'}: {error.message if error else ''}"
        )
    log.info("worker succeeded; changed paths: %s", ", ".join(result.changed_paths))


def _usage_evidence(usage: dict[str, Any] | None) -> dict[str, Any]:
    """The attempt evidence's model fields; the daily budget (``llm_daily_usd``) sums ``cost_usd``."""
    if not usage:
        return {}
    return {"cost_usd": usage.get("cost_usd"), "model": usage.get("model"), "prompt_sha256": usage.get("prompt_sha256")}


def _worker_result(ti) -> dict[str, Any] | None:
    """The worker's result: key ``result`` (local backend) or the pod's ``return_value`` (kubernetes)."""
    return ti.xcom_pull(task_ids="run_worker", key="result") or ti.xcom_pull(task_ids="run_worker")


def open_pull_request(read: dict[str, Any], *, config: dict[str, Any]) -> dict[str, Any]:
    from leviathan_lib.core import paths
    from leviathan_lib.cycle.delivery import DeliveryRejected, deliver
    from leviathan_lib.cycle.steps import ReadResult
    from leviathan_lib.forge import open_forge
    from leviathan_lib.worker.contract import AttemptResult

    context = get_current_context()
    ti = context["ti"]
    target = _target(config)
    read_result = ReadResult.model_validate(read)
    guard = _guardrails(ti)
    raw = _worker_result(ti)
    result = AttemptResult.model_validate({k: v for k, v in raw.items() if k != "attempt_started_at"})
    if result.outcome != "succeeded":  # a pod that ran reports a failed attempt as a successful task
        error = result.error
        detail = f"{error.code}: {error.message}" if error else "no error given"
        raise AirflowFailException(f"worker {result.outcome}: {detail}")
    forge = open_forge(target.forge, read_result.repo_url, target.forge_conn_id, draft=target.pr_draft,
                       labels=tuple(target.pr_labels))
    dag_run = context["dag_run"]
    try:
        pr = deliver(
            target, read_result, guard.attempt, result, forge, run_id=context["run_id"],
            commit_date=dag_run.run_after, scratch_dir=paths.scratch_dir(),
            evidence_summary={"target_id": target.target_id,
                              "checks": [c.model_dump() for c in guard.decision.checks]},
        )
    except DeliveryRejected as exc:
        ti.xcom_push(key="rejection", value={"code": exc.code, "message": str(exc)})
        raise AirflowFailException(f"delivery rejected: {exc.code}: {exc}") from None
    log.info("pull request #%s %s (%s -> %s)", pr.number, pr.url, pr.head, pr.base)
    return {"number": pr.number, "url": pr.url, "branch": pr.head, "head_sha": pr.head_sha}


def record_evidence(*, config: dict[str, Any], asset: Asset) -> dict[str, Any]:
    from leviathan_lib.cycle import steps as cycle
    from leviathan_lib.evidence.records import AttemptEvidence

    context = get_current_context()
    ti = context["ti"]
    target = _target(config)
    raw_read = ti.xcom_pull(task_ids="read_backlog")
    read = cycle.ReadResult.model_validate(raw_read) if raw_read else None
    guard = _guardrails(ti)
    attempt = None
    failure = None
    if guard and guard.attempt:
        plan = guard.attempt
        attempt = AttemptEvidence(task_id=plan.task_id, attempt=plan.attempt, task_hash=plan.task_hash,
                                  branch=plan.branch, backend=target.worker_backend,
                                  image=target.worker_image if target.worker_backend == "kubernetes" else None)
        result = _worker_result(ti)
        pr = ti.xcom_pull(task_ids="open_pull_request")
        rejection = ti.xcom_pull(task_ids="open_pull_request", key="rejection")
        if result:
            error = result.get("error") or {}
            attempt = attempt.model_validate({
                **attempt.model_dump(), "outcome": result["outcome"],
                "changed_paths": result.get("changed_paths") or [],
                "started_at": result.get("attempt_started_at") or result.get("started_at"),
                "finished_at": result.get("finished_at"),
                "error_code": error.get("code"), "error_message": error.get("message"),
                **_usage_evidence(result.get("usage")),
            })
        else:
            prepared = ti.xcom_pull(task_ids="prepare_attempt", key="prepared_at")
            attempt.outcome, attempt.error_code, attempt.error_message = missing_result_outcome(
                prepared, target.attempt_timeout_seconds, datetime.now(UTC))
        if rejection:
            attempt.outcome = "rejected_by_guardrail"
            attempt.error_code, attempt.error_message = rejection["code"], rejection["message"]
        elif pr:
            attempt.pr_number, attempt.pr_url = pr["number"], pr["url"]
        elif attempt.outcome == "succeeded":
            attempt.outcome, attempt.error_code = "failed", "pr_not_opened"
            attempt.error_message = "open_pull_request did not finish (see its task log)"
        attempt.finished_at = attempt.finished_at or datetime.now(UTC)
    elif guard is None and read is not None and not read.error:
        failure = cycle.CycleError(code="guardrails_failed", message="check_guardrails failed (see its task log)")
    record = cycle.build_record(target, dag_run_id=context["run_id"], run_type=_run_type(context["dag_run"]),
                                read=read, guard=guard, attempt=attempt, failure=failure)
    payload = record.model_dump(mode="json")
    context["outlet_events"][asset].extra = payload
    try:  # StatsD is best effort: it never fails the cycle
        from leviathan_lib.orchestrator.metrics import emit_cycle_safely

        emit_cycle_safely(record)
    except Exception:
        log.warning("could not emit Leviathan StatsD metrics", exc_info=True)
    log.info("cycle evidence: decision=%s stopped=%s %s", record.decision, record.stopped_reason,
             record.stopped_detail)
    return payload


def missing_result_outcome(prepared_at: str | None, timeout_seconds: int, now: datetime) -> tuple[str, str, str]:
    """A worker that left no result: a pod past its deadline (activeDeadlineSeconds) timed out; else it crashed."""
    if prepared_at and (now - datetime.fromisoformat(prepared_at)).total_seconds() >= timeout_seconds:
        return "timed_out", "timeout", f"the worker pod ran past attempt_timeout_seconds ({timeout_seconds}s)"
    return "failed", "worker_crashed", "run_worker left no result (see its task log)"


def _run_type(dag_run) -> str:
    run_type = dag_run.run_type
    return str(getattr(run_type, "value", run_type))


def cycle_outcome(record: dict[str, Any]) -> str:
    """Mark the run failed when the cycle hit an error, so alerts on failed runs fire; skips stay green."""
    attempt = record.get("attempt") or {}
    if record["decision"] == "error" or attempt.get("outcome") in ERROR_OUTCOMES:
        raise AirflowFailException(f"cycle stopped: {record['stopped_reason']}: {record['stopped_detail']}")
    return record["stopped_reason"]


def config_error(problems: list[str]) -> None:
    raise AirflowFailException("invalid target file:\n" + "\n".join(problems))
