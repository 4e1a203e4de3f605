"""Build one Airflow DAG per target file.

Parse-time work is limited to reading the small target YAML files: no network, no git, no heavy
imports (the worker, forge and delivery modules are imported inside the tasks). A broken target file
becomes a paused ``leviathan__invalid__<file>`` DAG whose description and single failing task say
exactly what is wrong, so the operator sees it in the UI and the other targets are unaffected.
"""

from __future__ import annotations

import logging
import re
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetAlias, TriggerRule, task
from airflow.sdk.bases.decorator import DecoratedOperator
from airflow.sdk.definitions.deadline import DeadlineAlert

from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE
from leviathan_lib.core.config import TargetConfig, load_target, target_files
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.names import (
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
    evidence_asset_uri,
    invalid_dag_id,
)
from leviathan_lib.orchestrator.targets import targets_location

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, XComArg

log = logging.getLogger(__name__)

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {"owner": "leviathan", "retries": 2, "retry_delay": timedelta(seconds=30)}


def evidence_asset(target_id: str) -> Asset:
    return Asset(name=f"leviathan_evidence__{target_id}", uri=evidence_asset_uri(target_id),
                 group="leviathan")


def evidence_alias(target_id: str) -> AssetAlias:
    """``plan``'s outlet: through it ``plan`` emits the evidence event of a skip, and nothing when it attempts."""
    return AssetAlias(name=f"leviathan_evidence_alias__{target_id}", group="leviathan")


def _doc(target: TargetConfig, config_file: Path) -> str:
    """The DAG's Markdown page; every interpolated value is escaped, since target files are user input."""

    def md(value: object) -> str:
        # Backslash-escape all ASCII punctuation (CommonMark allows it for each): no value can open a code
        # span, a link, an HTML tag or entity, or split a table cell; line breaks become spaces.
        text = re.sub(r"[\x00-\x1f\x7f]", " ", str(value))
        return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)

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
| max open PRs / attempts per task / breaker | {target.max_open_prs} / {target.max_attempts_per_task} / \
{target.circuit_breaker_failures} |
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
        schedule=target.effective_schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timeout + waits + timedelta(minutes=15),
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
        plan = task.branch(task_id=TASK_PLAN, inlets=[asset], outlets=[alias], max_active_tis_per_dag=1,
                           do_xcom_push=False)(t.plan)(
            config=config, repo_url=repo_url, asset=asset, alias=alias, switch_variable=GLOBAL_SWITCH_VARIABLE,
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
    from airflow.configuration import conf
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
    """The error DAG of a broken target file (its problems may quote the file: no backtick ends a code span)."""
    listing = "\n".join("- `" + p.replace("`", "'") + "`" for p in problems)
    return config_error_dag(
        invalid_dag_id(_safe_id(config_file.stem)),
        description=f"INVALID target file {config_file.name}: this target does not run",
        doc_md=f"### Invalid Leviathan target file\n\n`{config_file}` cannot be used:\n\n{listing}\n\n"
        "Fix the file (check it with `leviathan validate FILE`); this DAG disappears once it is valid.",
        problems=problems,
    )


#: Target keys a deployment may default in airflow.cfg's ``[leviathan]`` section (Helm: ``config.leviathan``).
DEPLOYMENT_DEFAULT_KEYS = ("worker_image", "worker_namespace")


def deployment_defaults() -> dict[str, str]:
    """``[leviathan] worker_image`` / ``worker_namespace``: used by targets whose file does not set them."""
    from airflow.configuration import conf

    values = {key: conf.get("leviathan", key, fallback="").strip() for key in DEPLOYMENT_DEFAULT_KEYS}
    return {key: value for key, value in values.items() if value}


def _load(config_file: Path, defaults: dict[str, str]) -> TargetConfig:
    """A target file with the deployment defaults for the keys it leaves out (raises ValidationFailed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = load_target(config_file)
    unset = {k: v for k, v in defaults.items() if k not in target.model_fields_set}
    if unset:
        target = target.model_copy(update=unset)
    for warning in caught:
        log.warning("%s", warning.message)
    return target


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


def _may_claim(config_file: Path, id_token: re.Pattern[bytes]) -> bool:
    """Whether the file can name the target id: its bytes hold the id as a whole word, or a backslash (an
    escape in a quoted YAML string could spell it); YAML cannot otherwise produce the id from other bytes."""
    try:
        data = config_file.read_bytes()
    except OSError:
        return False  # unreadable: a broken file, which claims no target_id
    return b"\\" in data or id_token.search(data) is not None


def _build_one(files: list[Path], target_id: str) -> dict[str, DAG]:
    """Only the DAG a task process runs: one YAML parse and one DAG however many target files there are.

    Every file's bytes are scanned for the id (microseconds each) and only those that hold it are
    parsed, so a second file claiming the id still refuses the DAG here, as in the DAG processor.
    """
    defaults = deployment_defaults()
    id_token = re.compile(rb"(?<![a-z0-9_-])" + re.escape(target_id.encode()) + rb"(?![a-z0-9_-])")
    claims: list[tuple[Path, TargetConfig]] = []
    for config_file in files:
        if not _may_claim(config_file, id_token):
            continue
        try:
            target = _load(config_file, defaults)
        except ValidationFailed:
            continue  # the DAG processor shows it as an error DAG; it is not this task's DAG
        if target.target_id == target_id:
            claims.append((config_file, target))
    if len(claims) != 1:
        return {}  # no such target, or a duplicate target_id: fail closed ("Dag not found")
    config_file, target = claims[0]
    return {target.dag_id: build_target_dag(target, config_file)}


def build_all(directory: Path | None = None) -> dict[str, DAG]:
    """All target DAGs (and error DAGs for broken files), keyed by dag_id; in a task process only its DAG.

    Two files claiming one ``target_id`` are both refused: which one is meant is unknown (fail closed).
    """
    config_files = target_files(directory or targets_location().path)
    wanted = _task_target_id()
    if wanted is not None:
        return _build_one(config_files, wanted)
    defaults = deployment_defaults()
    loaded: dict[str, list[tuple[Path, TargetConfig]]] = {}
    broken: dict[Path, list[str]] = {}
    for config_file in config_files:
        try:
            target = _load(config_file, defaults)
            loaded.setdefault(target.target_id, []).append((config_file, target))
        except ValidationFailed as exc:
            broken[config_file] = [str(p) for p in exc.problems]
    dags: dict[str, DAG] = {}
    for target_id, entries in loaded.items():
        if len(entries) == 1:
            config_file, target = entries[0]
            dags[target.dag_id] = build_target_dag(target, config_file)
            continue
        files = [str(f) for f, _ in entries]
        for config_file, _ in entries:
            others = ", ".join(f for f in files if f != str(config_file))
            broken[config_file] = [f"{config_file}: target_id: {target_id!r} is already used by {others}"]
    for config_file, problems in sorted(broken.items()):
        for problem in problems:
            log.error("invalid Leviathan target: %s", problem)
        dag = build_error_dag(config_file, problems)
        dags[dag.dag_id] = dag
    return dags
