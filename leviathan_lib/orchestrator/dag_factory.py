"""Build one Airflow DAG per target file.

Parse-time work is limited to reading the small target YAML files: no network, no git, no heavy
imports (the worker, forge and delivery modules are imported inside the tasks). A broken target file
becomes a paused ``leviathan__invalid__<file>`` DAG whose description and single failing task say
exactly what is wrong, so the operator sees it in the UI and the other targets are unaffected.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetAlias, AssetOrTimeSchedule, CronTriggerTimetable, TriggerRule, task
from airflow.sdk.bases.decorator import DecoratedOperator
from airflow.sdk.definitions.deadline import DeadlineAlert

from leviathan_lib.core import target_scan
from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.inert import md
from leviathan_lib.core.names import (
    AUTONOMY_ASSET_NAME,
    AUTONOMY_ASSET_URI,
    TASK_APPROVE_PLAN,
    TASK_APPROVE_PULL_REQUEST,
    TASK_CONFIG_ERROR,
    TASK_CYCLE_OUTCOME,
    TASK_OPEN_PULL_REQUEST,
    TASK_PLAN,
    TASK_PREPARE_ATTEMPT,
    TASK_RECORD_EVIDENCE,
    TASK_RUN_WORKER,
    TASK_SKIP,
    change_asset_name,
    change_asset_uri,
    dag_id,
    evidence_asset_uri,
    invalid_dag_id,
)
from leviathan_lib.core.target_scan import TargetFile
from leviathan_lib.orchestrator.targets import targets_location

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, XComArg

log = logging.getLogger(__name__)

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {"owner": "leviathan", "retries": 2, "retry_delay": timedelta(seconds=30)}


def evidence_asset(target_id: str) -> Asset:
    return Asset(name=f"leviathan_evidence__{target_id}", uri=evidence_asset_uri(target_id),
                 group="leviathan")


def autonomy_asset() -> Asset:
    """The global switch's changes: ``plan`` reads the newest beside the Variable (core/autonomy.py)."""
    return Asset(name=AUTONOMY_ASSET_NAME, uri=AUTONOMY_ASSET_URI, group="leviathan")


def change_asset(target_id: str) -> Asset:
    """Forge webhook deliveries record events here (control.webhooks); a ``webhooks: true`` DAG runs on it."""
    return Asset(name=change_asset_name(target_id), uri=change_asset_uri(target_id), group="leviathan")


def cycle_schedule(target: TargetConfig) -> str | AssetOrTimeSchedule:
    """The target's cron, or with ``webhooks`` its safety-net cron OR an event on its change asset."""
    if not target.webhooks:
        return target.effective_schedule
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(target.effective_schedule, timezone="UTC"),
                               assets=change_asset(target.target_id))


def evidence_alias(target_id: str) -> AssetAlias:
    """``plan``'s outlet: through it ``plan`` emits the evidence event of a skip, and nothing when it attempts."""
    return AssetAlias(name=f"leviathan_evidence_alias__{target_id}", group="leviathan")


def _doc(target: TargetConfig, config_file: Path) -> str:
    """The DAG's Markdown page; every interpolated value is escaped (:func:`md`)."""
    prefixes = ", ".join(md(p) for p in target.allowed_path_prefixes)
    return f"""\
### Leviathan target {md(target.target_id)}

Reads {md(target.backlog_path)} on {md(target.target_branch)} of {md(target.target_repo_url)}, picks one
`ready: true` task that passes every guardrail, runs the **{md(target.worker_backend)}** worker and opens a
pull request on the **{md(target.forge)}** forge for human review. Leviathan never merges.

| setting | value |
|---|---|
| config file | {md(config_file)} |
| autonomy (target flag) | {md(target.autonomy_enabled)} (global switch: Variable {md(GLOBAL_SWITCH_VARIABLE)}) |
| allowed path prefixes | {prefixes} |
| max open PRs / failed attempts per task / review rounds / breaker | {target.max_open_prs} / \
{target.max_attempts_per_task} / {target.max_review_rounds} / {target.circuit_breaker_failures} |
| attempt timeout | {target.attempt_timeout_seconds} s |

Pause this DAG to switch this target off. Each run's evidence is one event on the asset
{md(evidence_asset_uri(target.target_id))} (written by `plan` on a skip, by `record_evidence` after an attempt).
"""


def build_target_dag(target: TargetConfig, config_file: Path) -> DAG:
    """The cycle DAG: plan → run_worker → open_pull_request → record_evidence → cycle_outcome.

    ``plan`` (``@task.branch``) reads the backlog, checks the guardrails and, when it will not attempt,
    writes the cycle's evidence itself. Every other task is also directly downstream of ``plan``, so on a
    plain skip ``plan`` follows only ``skip`` and skips all the others in one call: an idle cycle is one
    task process, and the scheduler only completes the EmptyOperator (no trigger-rule cascade). ``skip``
    is a leaf so that a ``plan`` that ends failed after it skipped the rest (Airflow could not store its
    success, e.g. a database error in the final state call) fails the run instead of leaving it green
    without a record. Following ``run_worker`` follows everything after it (Airflow follows a followed
    task's descendants). An error skip follows only
    ``cycle_outcome``, which fails the run. On the kubernetes backend ``run_worker`` is a pod, preceded by
    ``prepare_attempt`` that builds its spec. ``record_evidence`` runs after an attempt or a failed ``plan``
    (``none_skipped``), never after a skip, so every cycle has exactly one record.
    """
    from leviathan_lib.orchestrator import tasks as t  # light: task bodies import their heavy modules lazily

    asset = evidence_asset(target.target_id)
    alias = evidence_alias(target.target_id)
    repo_url = target.repo_location(config_file)
    timeout = timedelta(seconds=target.attempt_timeout_seconds)
    waits = timedelta(seconds=target.approval_timeout_seconds if target.approval != "none" else 0)
    config = target.model_dump(mode="json")

    with DAG(
        dag_id=target.dag_id,
        description=f"Leviathan cycle for {target.target_id}: backlog task -> worker -> pull request",
        schedule=cycle_schedule(target),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(seconds=target.run_timeout_seconds),
        deadline=cycle_deadline(target, timeout + waits),
        default_args=DEFAULT_ARGS,
        tags=["leviathan", f"target:{target.target_id}", f"forge:{target.forge}"],
        doc_md=_doc(target, config_file),
        is_paused_upon_creation=True,
        params={},
    ) as dag:
        kubernetes = target.worker_backend == "kubernetes"
        first = TASK_PREPARE_ATTEMPT if kubernetes else TASK_RUN_WORKER
        # One plan per target at a time, across every run (a backfill's replays and a scheduled run too):
        # the guardrails decide on one history, and two first events through the alias at once hit a
        # unique-key race in Airflow's alias bookkeeping (the second plan would end failed). No return_value
        # XCom: nothing reads the branch list (Airflow keeps what it followed in its own XCom), and an idle
        # cycle saves the write.
        switches = autonomy_asset()
        plan = task.branch(task_id=TASK_PLAN, inlets=[asset, switches], outlets=[alias], max_active_tis_per_dag=1,
                           do_xcom_push=False)(t.plan)(
            config=config, repo_url=repo_url, asset=asset, alias=alias, switch_variable=GLOBAL_SWITCH_VARIABLE,
            switches=switches, targets_dir=str(config_file.parent),
            run_task_id=TASK_APPROVE_PLAN if target.approval == "plan" else first,
        )
        start: XComArg | BaseOperator
        worker: XComArg | BaseOperator
        if kubernetes:
            from leviathan_lib.worker.backends.kubernetes import build_worker_operator  # cncf: k8s only

            start = task(task_id=TASK_PREPARE_ATTEMPT, retries=0)(t.prepare_attempt)(config=config)
            worker = build_worker_operator(target, result_filter=t.sanitize_pod_result)
            start >> worker
        else:
            worker = task(task_id=TASK_RUN_WORKER, retries=0, execution_timeout=timeout + timedelta(minutes=2))(
                t.run_worker
            )(config=config)
            start = worker
        EmptyOperator(task_id=TASK_SKIP, doc_md="The guardrails decided not to run the worker this cycle.")
        pr = task(task_id=TASK_OPEN_PULL_REQUEST)(t.open_pull_request)(config=config)
        record = task(task_id=TASK_RECORD_EVIDENCE, outlets=[asset], trigger_rule=TriggerRule.NONE_SKIPPED)(
            t.record_evidence
        )(config=config, asset=asset)
        outcome = task(task_id=TASK_CYCLE_OUTCOME, retries=0,
                       trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(t.cycle_outcome)()
        pr >> record >> outcome
        if target.approval == "none":
            worker >> pr
        else:
            gate = _approval_gate(target, asset, alias, first)
            gate >> outcome
            if target.approval == "plan":
                gate >> start
                worker >> pr
            else:
                worker >> gate >> pr
        plan >> [t for t in dag.tasks if t.task_id != TASK_PLAN]  # one skip call skips them all
        for operator in dag.tasks:
            if isinstance(operator, DecoratedOperator):  # Leviathan's @task bodies, not the pod or the gate
                # No templated arguments: the target file's strings are never Jinja templates (no
                # "{{ conn... }}" in a PR label rendered into a secret), and the task runner has nothing to
                # render, serialize and store as rendered fields before each task (an Execution API call).
                operator.template_fields = ()
    return dag


def _approval_gate(target: TargetConfig, asset: Asset, alias: AssetAlias, first: str) -> BaseOperator:
    """The target's approval gate: after ``plan`` (it skips ``first`` on a rejection) or before the push."""
    from leviathan_lib.orchestrator.approval import ApprovalGate  # the HITL operator: gated targets only

    if target.approval == "plan":
        return ApprovalGate(task_id=TASK_APPROVE_PLAN, gate="plan", target=target, asset=asset, alias=alias,
                            skip_on_reject=[first])
    return ApprovalGate(task_id=TASK_APPROVE_PULL_REQUEST, gate="pull_request", target=target, asset=asset,
                        alias=alias, skip_on_reject=[TASK_OPEN_PULL_REQUEST])


def cycle_deadline(target: TargetConfig, expected: timedelta) -> DeadlineAlert | None:
    """An alert for a cycle that runs past its expected time, when ``[leviathan] deadline_notifier`` names
    where to send it (None otherwise).

    Expected: the attempt (and approval) timeout plus ``[leviathan] deadline_margin_seconds``, counted from
    when the run was queued. The scheduler evaluates it; the callback runs on the executor and hands the
    alert to the notifier. Opt-in, because Airflow 3.3.2's ``dag.test()`` cannot finish a DAG with a deadline.
    """
    from airflow.sdk.configuration import conf
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineReference

    from leviathan_lib.orchestrator.deadline import DEFAULT_MARGIN_SECONDS, deadline_missed

    if not conf.get("leviathan", "deadline_notifier", fallback="").strip():
        return None
    margin = conf.getint("leviathan", "deadline_margin_seconds", fallback=DEFAULT_MARGIN_SECONDS)
    interval = expected + timedelta(seconds=max(0, margin))
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=interval, name="leviathan_cycle_overrun",
        callback=SyncCallback(deadline_missed, kwargs={"target_id": target.target_id,
                                                       "expected_seconds": int(interval.total_seconds())}),
    )


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:100] or "unnamed"


def config_error_dag(dag_id: str, *, description: str, doc_md: str, problems: list[str]) -> DAG:
    """A paused, unscheduled DAG that shows a configuration problem in the UI and fails with it when run."""
    from leviathan_lib.orchestrator import tasks as t

    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
        tags=["leviathan", "config-error"],
        doc_md=doc_md,
        is_paused_upon_creation=True,
    ) as dag:
        task(task_id=TASK_CONFIG_ERROR, retries=0)(t.config_error)(problems=problems)
    return dag


def build_error_dag(config_file: Path, problems: list[str]) -> DAG:
    """The DAG of a broken target file that names no target id: paused, unscheduled, its page says why."""
    listing = "\n".join(f"- {md(p)}" for p in problems)
    return config_error_dag(
        invalid_dag_id(_safe_id(config_file.stem)),
        description=f"INVALID target file {config_file.name}: this target does not run",
        doc_md=f"### Invalid Leviathan target file\n\n{md(config_file)} cannot be used:\n\n{listing}\n\n"
        "Fix the file (check it with `leviathan validate FILE`); this DAG disappears once it is valid.",
        problems=problems,
    )


#: The cadence of a broken target whose file's own ``schedule_cron`` cannot be read.
BROKEN_SCHEDULE = "H/5 * * * *"


def _broken_schedule(target_id: str, files: list[TargetFile]) -> str:
    from leviathan_lib.core import schedule

    for cron in [f.schedule_cron for f in files if f.schedule_cron] + [BROKEN_SCHEDULE]:
        try:
            return schedule.spread(schedule.check(cron), target_id)
        except ValueError:
            continue
    return schedule.spread(BROKEN_SCHEDULE, target_id)


def build_broken_target_dag(target_id: str, files: list[TargetFile]) -> DAG:
    """The target's own DAG while its file is broken (or a second file names its id): on the target's
    cadence, each run records ``config_invalid`` (carrying the target's history forward) and fails, so the
    problem shows on the target's DAG, in its failed runs and alerts; no cycle runs until the file is fixed,
    and then the target continues on the same DAG and evidence."""
    from leviathan_lib.orchestrator import tasks as t

    asset = evidence_asset(target_id)
    problems = [p for f in files for p in f.problems]
    listing = "\n".join(f"- {md(p)}" for p in problems)
    shown = ", ".join(f.name for f in files)
    with DAG(
        dag_id=dag_id(target_id),
        description=f"INVALID target file {shown}: no cycle runs until it is fixed",
        schedule=_broken_schedule(target_id, files),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "retries": 0},
        tags=["leviathan", f"target:{target_id}", "config-error"],
        doc_md=f"### Leviathan target {md(target_id)}: invalid target file\n\n{listing}\n\n"
        "No cycle runs until the file is fixed (check it with `leviathan validate FILE`); each run records "
        "`config_invalid` and fails. Once the file is valid this DAG is the target's cycle again, with its "
        "history.",
        is_paused_upon_creation=True,
        params={},
    ) as dag:
        config = task(task_id=TASK_CONFIG_ERROR, inlets=[asset], outlets=[asset])(t.config_invalid)(
            target_id=target_id, problems=problems, asset=asset)
        outcome = task(task_id=TASK_CYCLE_OUTCOME)(t.cycle_outcome)()
        config >> outcome
        for operator in dag.tasks:
            operator.template_fields = ()  # the problems quote the file: never Jinja
    return dag


#: Target keys a deployment may default in airflow.cfg's ``[leviathan]`` section (Helm: ``config.leviathan``).
DEPLOYMENT_DEFAULT_KEYS = ("worker_image", "worker_namespace")


def deployment_defaults() -> dict[str, str]:
    """``[leviathan] worker_image`` / ``worker_namespace``: used by targets whose file does not set them."""
    from airflow.sdk.configuration import conf

    values = {key: conf.get("leviathan", key, fallback="").strip() for key in DEPLOYMENT_DEFAULT_KEYS}
    return {key: value for key, value in values.items() if value}


def _task_target_id() -> str | None:
    """The target whose task this process runs, or None (the DAG processor, ``dag.test()``, an error DAG).

    The task runner parses the DAG file before every task and names the DAG in Airflow's parsing
    context; the DAG processor does not.
    """
    from airflow.sdk import get_parsing_context

    dag_id = get_parsing_context().dag_id or ""
    if not dag_id.startswith("leviathan__") or dag_id.startswith("leviathan__invalid__"):
        return None  # an error DAG (or a target_id starting "invalid__") is built the DAG processor's way
    return dag_id.removeprefix("leviathan__")


def _index_file() -> Path | None:
    """Where a task process keeps the index of the targets folder (None: no writable state folder)."""
    from leviathan_lib.core import paths

    try:
        return paths.state_dir() / "targets-index.json"
    except OSError:
        return None


def _dags_of(target_id: str, files: list[TargetFile], defaults: dict[str, str]) -> DAG:
    """The target's cycle DAG, or its broken-file DAG when its one file is invalid or more files name it."""
    if len(files) == 1 and files[0].target is not None:
        entry = files[0]
        assert entry.target is not None
        target = entry.target
        unset = {k: v for k, v in defaults.items() if k not in target.model_fields_set}
        for warning in entry.warnings:
            log.warning("%s", warning)
        return build_target_dag(target.model_copy(update=unset) if unset else target, Path(entry.path))
    for entry in files:
        for problem in entry.problems:
            log.error("invalid Leviathan target: %s", problem)
    return build_broken_target_dag(target_id, files)


def build_all(directory: Path | None = None) -> dict[str, DAG]:
    """One DAG per target id (its cycle, or its broken-file DAG), plus a paused error DAG per broken file
    that names no id; in a task process only that task's DAG, from one file (:func:`target_scan.find_target`)."""
    folder = directory or targets_location().path
    defaults = deployment_defaults()
    wanted = _task_target_id()
    if wanted is not None:
        files = target_scan.find_target(folder, wanted, _index_file())
        return {dag_id(wanted): _dags_of(wanted, files, defaults)} if files else {}
    entries = target_scan.scan(folder)
    dags: dict[str, DAG] = {}
    for target_id, files in target_scan.by_target(entries).items():
        dags[dag_id(target_id)] = _dags_of(target_id, files, defaults)
    for entry in entries:
        if entry.target_id is None:
            for problem in entry.problems:
                log.error("invalid Leviathan target: %s", problem)
            dag = build_error_dag(Path(entry.path), entry.problems)
            dags[dag.dag_id] = dag
    return dags
