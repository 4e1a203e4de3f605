"""The approval gate task: Airflow's ApprovalOperator, with Leviathan's text and evidence.

It waits in ``awaiting_input`` (no worker slot) under Browse → Required Actions. Approve continues the
cycle. Reject, or no answer within ``approval_timeout_seconds`` (the default option), writes the cycle's
record itself (``rejected_by_human``, who and when; the ledger remembers the task's definition so it
waits until a human changes it) and skips only the worker path: ``record_evidence`` is skipped with it
and ``cycle_outcome`` still runs. Imported only for targets that enable a gate.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowFailException

from leviathan_lib.core.names import XCOM_APPROVAL
from leviathan_lib.core.until import awaiting_approval

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

    from leviathan_lib.core.config import TargetConfig
    from leviathan_lib.cycle.approval import Gate

log = logging.getLogger("leviathan")


class ApprovalGate(ApprovalOperator):
    """One gate of one target; ``skip_on_reject`` are the worker-path tasks a rejection skips."""

    def __init__(self, *, gate: Gate, target: TargetConfig, asset: Asset, alias: AssetAlias,
                 skip_on_reject: list[str], **kwargs: Any) -> None:
        from airflow.sdk import Param

        from leviathan_lib.cycle.approval import MAX_NOTE_CHARS, REASON_PARAM, REJECT

        super().__init__(
            subject=f"{target.target_id}: approval ({gate})",
            defaults=[REJECT],  # what the scheduler answers at the timeout
            # null: Airflow's form sends a field left empty as null
            params={REASON_PARAM: Param(None, type=["null", "string"], maxLength=MAX_NOTE_CHARS,
                                        title="Reason (optional)",
                                        description="Why you approve or reject: kept in the cycle's evidence and "
                                                    "shown on the dashboard and in the Leviathan view.")},
            assigned_users=[{"id": user, "name": user} for user in target.approval_assignees] or None,
            response_timeout=timedelta(seconds=target.approval_timeout_seconds),
            outlets=[alias], retries=0, **kwargs,
        )
        self.gate, self.config = gate, target.model_dump(mode="json")
        self.evidence_asset, self.evidence_alias, self.skip_on_reject = asset, alias, skip_on_reject

    def execute(self, context: Any) -> Any:
        """Write the question (the task, its scope, the plan or the final diff), then wait for the answer."""
        from leviathan_lib.cycle import approval
        from leviathan_lib.orchestrator import tasks as t

        ti = context["ti"]
        target = t._target(self.config)
        read, guard = t._required_read(ti), t._planned(ti)
        plan = guard.attempt
        assert plan is not None
        self.subject = approval.subject(self.gate, target, plan)
        if self.gate == "plan":
            self.body = approval.plan_body(target, read, plan)
        else:
            result = t._worker_result(ti) or {}
            if result.get("outcome") == t.RED_AT_BASE:  # no change to approve, and no failure: nothing to ask
                log.info("no change to approve: the repository's checks already fail on the pinned commit")
                return None
            if result.get("outcome") != "succeeded":
                raise AirflowFailException(f"the worker did not succeed ({result.get('outcome')}): nothing to approve")
            self.body = approval.diff_body(target, read, plan, str(result.get("patch") or ""),
                                           [str(p) for p in result.get("changed_paths") or []])
        now = datetime.now(UTC)
        waits = awaiting_approval(now, now + timedelta(seconds=target.approval_timeout_seconds), now)
        log.info("task %s: %s of the %s (Browse -> Required Actions)", plan.task_id, waits, self.gate)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Record the answer; on a rejection (or timeout) write the cycle's record and skip the worker path."""
        from leviathan_lib.cycle import approval
        from leviathan_lib.orchestrator import tasks as t

        response = HITLOperator.execute_complete(self, context=context, event=event)
        ti = context["ti"]
        target = t._target(self.config)
        guard = t._planned(ti)
        assert guard.attempt is not None
        decided = approval.decision(self.gate, target, guard.attempt, {**event, **response})
        ti.xcom_push(key=XCOM_APPROVAL, value=decided.model_dump(mode="json"))
        if decided.choice == "approved":
            log.info("%s approved by %s at %s", self.gate, decided.by_name, decided.at)
            return response
        log.warning("%s", approval.rejection_message(decided))
        self._record_rejection(context, target, decided)
        self.skip(ti=ti, tasks=[self.dag.get_task(task_id) for task_id in self.skip_on_reject])
        return response

    def _record_rejection(self, context: Any, target: TargetConfig, decided: Any) -> None:
        from leviathan_lib.contracts.xcom import CycleError
        from leviathan_lib.cycle.approval import rejected_attempt, rejection_message
        from leviathan_lib.cycle.outcome import attempt_evidence
        from leviathan_lib.orchestrator import tasks as t

        ti = context["ti"]
        guard = t._planned(ti)
        read = t._required_read(ti)
        # The dashboard written by plan showed the task as selected: now it waits for a new definition.
        rewritten = t._dashboard(target, read, guard, run_id=context["run_id"], dag_run=context["dag_run"],
                                 repo_url=read.repo_url, rejection=decided)
        guard = guard.model_copy(update={"dashboard": rewritten or guard.dashboard})
        assert guard.attempt is not None
        attempt = failure = None
        if self.gate == "pull_request":
            attempt = rejected_attempt(attempt_evidence(target, guard.attempt, result=t._worker_result(ti), pr=None,
                                                        rejection=None, prepared_at=None, now=datetime.now(UTC)),
                                       decided)
        else:
            failure = CycleError(code="rejected_by_human", message=rejection_message(decided))

        def emit(payload: dict[str, Any]) -> None:
            context["outlet_events"][self.evidence_alias].add(self.evidence_asset, extra=payload)

        t._write_record(target, read=read, guard=guard, attempt=attempt, failure=failure, approval=decided,
                        emit=emit)
