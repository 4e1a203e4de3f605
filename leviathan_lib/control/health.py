"""Health of the stack as Spider reports it: metadata DB, scheduler heartbeat, each target's last cycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leviathan_lib.control import fleet


def health() -> tuple[bool, dict[str, Any]]:
    """The metadata DB, the scheduler's heartbeat and each target's last cycle, for ``/leviathan/health``."""
    from airflow.configuration import conf
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session
    from sqlalchemy import func, select, text

    components: dict[str, Any] = {}
    try:
        with create_session() as session:
            session.execute(text("SELECT 1"))
            beat = session.scalar(select(func.max(Job.latest_heartbeat)).where(
                Job.job_type == "SchedulerJob", Job.state == "running"))
    except Exception as exc:  # noqa: BLE001 — any DB failure is an unhealthy report, never a 500
        components["database"] = {"status": "unhealthy", "reason": f"metadata DB unreachable: {type(exc).__name__}"}
        return False, components
    components["database"] = {"status": "healthy"}
    now = datetime.now(UTC)
    threshold = conf.getint("scheduler", "scheduler_health_check_threshold", fallback=30)
    if beat is None:
        components["scheduler"] = {"status": "unhealthy", "reason": "no running scheduler has a heartbeat"}
    else:
        age = (now - beat).total_seconds()
        ok = age <= threshold
        components["scheduler"] = {"status": "healthy" if ok else "unhealthy", "heartbeat_age_seconds": round(age, 1),
                                   **({} if ok else {"reason": f"last heartbeat {age:.0f}s ago (> {threshold}s)"})}
    max_age = conf.getint("leviathan", "health_max_cycle_age_seconds", fallback=3600)
    overview, _, _ = fleet.overview()
    targets = {}
    for target in overview.targets:
        cycle_age = (now - target.last_cycle_at).total_seconds() if target.last_cycle_at else None
        entry: dict[str, Any] = {"status": "healthy", "dag_paused": target.dag_paused,
                                 "last_cycle_age_seconds": None if cycle_age is None else round(cycle_age, 1)}
        if target.dag_paused is False and cycle_age is not None and cycle_age > max_age:
            entry.update(status="unhealthy",
                         reason=f"running target's last cycle was {cycle_age:.0f}s ago (> {max_age}s)")
        targets[target.target_id] = entry
    components["targets"] = targets
    # Read newest first through the ledger: nothing is capped. Unknown totals (records from before them,
    # until the target's next cycle) and targets read in full (records from before the ledger) are named.
    components["evidence"] = {
        "status": "healthy",
        "totals_unknown": [t.target_id for t in overview.targets if t.totals is None],
        "read_in_full": [t.target_id for t in overview.targets if t.evidence_read == "full"],
    }
    healthy = all(c["status"] == "healthy" for c in (components["database"], components["scheduler"],
                                                    components["evidence"])) and all(
        t["status"] == "healthy" for t in targets.values())
    return healthy, components
