"""The approval gates waiting for an answer, as Airflow's metadata DB holds them (its Required Actions).

A waiting gate is a task instance in ``awaiting_input`` with an unanswered HITL request. The fleet and
target pages, ``/metrics`` and the dashboard issue show it, so an approval is never visible only under
Browse → Required Actions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from pydantic import BaseModel

from leviathan_lib.core.names import TASK_APPROVE_PLAN, TASK_APPROVE_PULL_REQUEST
from leviathan_lib.core.until import awaiting_approval

#: At most this many waiting gates are read (each DAG run has at most one; runs are bounded by the DAG).
MAX_PENDING = 500


class PendingApproval(BaseModel):
    dag_id: str
    run_id: str
    #: ``approve_plan`` or ``approve_pull_request``.
    gate_task: str
    #: The question's subject: ``<target> / <task>: approve …`` (its task id is backlog text: shown escaped).
    subject: str
    since: datetime
    #: When the gate rejects without an answer (the task's response timeout; None: unknown).
    rejects_at: datetime | None

    @property
    def url(self) -> str:
        """The Required Action in Airflow's UI (a path on the API server)."""
        return (f"/dags/{quote(self.dag_id, safe='')}/runs/{quote(self.run_id, safe='')}/tasks/"
                f"{quote(self.gate_task, safe='')}/required_actions")

    def text(self, now: datetime | None = None) -> str:
        """``awaiting approval since 14:05 UTC; rejected without an answer after …``."""
        return awaiting_approval(self.since, self.rejects_at, now or datetime.now(UTC))


def pending_approvals(dag_ids: list[str]) -> dict[str, list[PendingApproval]]:
    """``dag_id ->`` its gates waiting for an answer, oldest first."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    if not dag_ids:
        return {}
    found: dict[str, list[PendingApproval]] = {}
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.trigger_timeout,
                   HITLDetail.subject, HITLDetail.created_at)
            .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(TaskInstance.dag_id.in_(dag_ids), TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                   TaskInstance.task_id.in_((TASK_APPROVE_PLAN, TASK_APPROVE_PULL_REQUEST)),
                   HITLDetail.responded_at.is_(None))
            .order_by(HITLDetail.created_at).limit(MAX_PENDING)).all()
    for dag, run_id, task_id, timeout, subject, created in rows:
        found.setdefault(dag, []).append(PendingApproval(
            dag_id=dag, run_id=run_id, gate_task=task_id, subject=subject, since=_aware(created),
            rejects_at=_aware(timeout) if timeout else None))
    return found


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
