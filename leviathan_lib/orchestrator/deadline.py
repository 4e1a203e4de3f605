"""Deadline alerts: a cycle that runs past its expected time is reported to the configured notifier.

Every cycle DAG carries an Airflow ``DeadlineAlert`` (see ``dag_factory.cycle_deadline``): the scheduler
notices a run still going after its attempt timeout (plus the approval timeout of a gated target, plus
``[leviathan] deadline_margin_seconds``) and runs :func:`deadline_missed` on the executor. That hands the
alert to the notifier class named by ``[leviathan] deadline_notifier`` (an Airflow ``BaseNotifier``
subclass: Slack, SMTP, PagerDuty ... or Leviathan's own :class:`DeadlineNotifier`, which logs a warning
and counts ``<prefix>.leviathan.deadline_missed.<target_id>`` in StatsD). No notifier set, no alert.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger("leviathan")

DEFAULT_MARGIN_SECONDS = 600


class DeadlineNotifier(BaseNotifier):
    """Leviathan's default: a warning in the callback's log and a StatsD counter per target."""

    def notify(self, context: Any) -> None:
        from leviathan_lib.orchestrator.metrics import incr

        run = context.get("dag_run") or {}
        log.warning("Leviathan cycle %s of target %s runs past its expected %ss (deadline %s)",
                    run.get("dag_run_id"), context.get("target_id"), context.get("expected_seconds"),
                    (context.get("deadline") or {}).get("deadline_time"))
        incr(f"deadline_missed.{context.get('target_id')}")


def configured_notifier() -> BaseNotifier:
    """An instance of ``[leviathan] deadline_notifier`` (a dotted path, e.g. to :class:`DeadlineNotifier`)."""
    from airflow.sdk.configuration import conf
    from airflow.sdk.module_loading import import_string

    path = conf.get("leviathan", "deadline_notifier", fallback="").strip()
    notifier_class = import_string(path)
    if not (isinstance(notifier_class, type) and issubclass(notifier_class, BaseNotifier)):
        raise TypeError(f"[leviathan] deadline_notifier: {path} is not an Airflow BaseNotifier subclass")
    return notifier_class()


def deadline_missed(*, target_id: str, expected_seconds: int, context: dict[str, Any]) -> None:
    """The ``DeadlineAlert`` callback: ``context`` is Airflow's (the run and the deadline) plus the target."""
    configured_notifier()({**context, "target_id": target_id, "expected_seconds": expected_seconds})
