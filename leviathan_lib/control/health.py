"""Health of the stack as Spider reports it: metadata DB, scheduler heartbeat, every target the folder names.

Three states. ``unhealthy`` (HTTP 503): Airflow itself cannot work (no metadata DB, no scheduler
heartbeat). ``degraded`` (HTTP 200, so a liveness probe never restarts the API server for it): Airflow
works but a target needs a human: its file is broken, its cycles stopped (more than twice its interval,
while unpaused and switched on), its breaker is open, its sandbox cannot be built, its evidence cannot be
read, or the targets folder itself cannot be read; or a ``webhooks: true`` target listens and no
webhook secret is configured (every delivery is refused). Each part says why, naming the file or the target.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from leviathan_lib.control import fleet, webhook_setup

Status = Literal["healthy", "degraded", "unhealthy"]


def _target_problems(state: fleet.TargetState) -> list[str]:
    problems = []
    if not state.config_valid:
        problems.append("config_invalid: " + "; ".join(state.config_problems))
    if state.stale:
        problems.append(f"stale: {state.stale_reason}")
    if state.breaker_open:
        problems.append(f"circuit breaker open ({state.consecutive_failures}/{state.breaker_threshold} failures)")
    if state.sandbox_unavailable:
        problems.append("sandbox_unavailable: the newest cycle's worker cannot build the recipe sandbox")
    if state.unreadable_records:
        problems.append(f"{state.unreadable_records} unreadable evidence record(s): the target's cycles stop")
    return problems


def _scheduler(beat: datetime | None, now: datetime, threshold: int) -> dict[str, Any]:
    if beat is None:
        return {"status": "unhealthy", "reason": "no running scheduler has a heartbeat"}
    age = (now - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds()
    ok = age <= threshold
    return {"status": "healthy" if ok else "unhealthy", "heartbeat_age_seconds": round(age, 1),
            **({} if ok else {"reason": f"last heartbeat {age:.0f}s ago (> {threshold}s)"})}


def scheduler_heartbeat() -> datetime | None:
    """The newest heartbeat of a running scheduler (raises when the metadata DB cannot be read)."""
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session
    from sqlalchemy import func, select, text

    with create_session() as session:
        session.execute(text("SELECT 1"))
        beat: datetime | None = session.scalar(select(func.max(Job.latest_heartbeat)).where(
            Job.job_type == "SchedulerJob", Job.state == "running"))
    return beat


def health(now: datetime | None = None, overview: fleet.Overview | None = None) -> tuple[Status, dict[str, Any]]:
    """The overall status and each component's, for ``/leviathan/health`` (and the fleet page, which passes
    the ``overview`` it read)."""
    from airflow.configuration import conf

    now = now or datetime.now(UTC)
    components: dict[str, Any] = {}
    try:
        beat = scheduler_heartbeat()
    except Exception as exc:  # noqa: BLE001 — any DB failure is an unhealthy report, never a 500
        components["database"] = {"status": "unhealthy", "reason": f"metadata DB unreachable: {type(exc).__name__}"}
        return "unhealthy", components
    components["database"] = {"status": "healthy"}
    threshold = conf.getint("scheduler", "scheduler_health_check_threshold", fallback=30)
    components["scheduler"] = _scheduler(beat, now, threshold)
    if overview is None:
        overview, _, _ = fleet.overview(now)
    targets: dict[str, Any] = {}
    for state in overview.targets:
        problems = _target_problems(state)
        entry: dict[str, Any] = {"status": "degraded" if problems else "healthy", "dag_paused": state.dag_paused,
                                 "config_valid": state.config_valid, "cycle_expected": state.cycle_expected,
                                 "last_cycle_age_seconds": None if state.last_cycle_age_seconds is None
                                 else round(state.last_cycle_age_seconds, 1),
                                 "cycle_interval_seconds": state.cycle_interval_seconds}
        if problems:
            entry["reason"] = "; ".join(problems)
        if state.config_files:
            entry["files"] = state.config_files
        targets[state.target_id] = entry
    components["targets"] = targets
    folder: dict[str, Any] = {"status": "healthy"}
    if overview.folder_problem or overview.unnamed_files:
        folder = {"status": "degraded", "reason": overview.folder_problem or "broken target files name no target id",
                  "files": {f.path: f.problems for f in overview.unnamed_files}}
    components["targets_folder"] = folder
    # Read newest first through the ledger: nothing is capped. Unknown totals (records from before them,
    # until the target's next cycle) and targets read in full (records from before the ledger) are named.
    components["evidence"] = {
        "status": "healthy",
        "totals_unknown": [t.target_id for t in overview.targets if t.totals is None],
        "read_in_full": [t.target_id for t in overview.targets if t.evidence_read == "full"],
    }
    webhooks = webhook_setup.health_component()
    if webhooks is not None:
        components["webhooks"] = webhooks
    parts = [components["database"], components["scheduler"], components["evidence"], folder, *targets.values(),
             *([webhooks] if webhooks else [])]
    statuses = {part["status"] for part in parts}
    status: Status = "unhealthy" if "unhealthy" in statuses else "degraded" if "degraded" in statuses else "healthy"
    return status, components


def problems(components: dict[str, Any]) -> list[str]:
    """Every part that is not healthy, as one line each (``where: why``), for people."""
    out = [f"{name}: {part.get('reason', part['status'])}" for name, part in components.items()
           if name != "targets" and part.get("status") != "healthy"]
    out += [f"target {tid}: {part['reason']}" for tid, part in components.get("targets", {}).items()
            if part["status"] != "healthy"]
    return out
