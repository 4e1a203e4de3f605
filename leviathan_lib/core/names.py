"""The names every layer must agree on, defined once.

The ``agent/<task>/<attempt>`` branch scheme is a safety rule (Leviathan writes and deletes only there),
the DAG ids are how the emergency stop and the listeners find Leviathan's DAGs, and the task ids and
XCom keys are the contract between the DAG's tasks. A literal repeated in two modules can drift; a
constant imported from here cannot. Pure: no I/O, no imports beyond the standard library.
"""

from __future__ import annotations

from typing import Final

#: A name of one of the repository's checks (``checks:`` of its recipes file; ``required_checks``, a task's
#: ``checks``): the recipe-name alphabet, so it is inert in logs, file names and Markdown.
CHECK_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

# --- the agent branch scheme -------------------------------------------------------------------------

#: The only branch namespace Leviathan may write to or delete.
#: Where Spider (health, metrics, events, the Leviathan view) is mounted on the Airflow API server.
SPIDER_URL_PREFIX: Final = "/leviathan"
AGENT_BRANCH_PREFIX: Final = "agent/"


def agent_branch(task_id: str, attempt: int) -> str:
    """The branch attempt ``attempt`` of task ``task_id`` is delivered on: ``agent/<task>/<attempt>``."""
    return f"{AGENT_BRANCH_PREFIX}{task_id}/{attempt}"


def is_agent_branch(branch: str) -> bool:
    """``agent/`` followed by something that is not only slashes: a branch Leviathan may touch."""
    return branch.startswith(AGENT_BRANCH_PREFIX) and bool(branch[len(AGENT_BRANCH_PREFIX):].strip("/"))


def require_agent_branch(branch: str) -> str:
    """Return ``branch`` if Leviathan may touch it; ValueError otherwise (a hard rule, not a setting)."""
    if not is_agent_branch(branch):
        raise ValueError(f"refusing to touch branch {branch!r}: only {AGENT_BRANCH_PREFIX}… branches")
    return branch


def branch_task_id(branch: str) -> str | None:
    """The task an ``agent/<task>/…`` branch delivers; None for any other branch."""
    parts = branch.split("/")
    if len(parts) >= 2 and f"{parts[0]}/" == AGENT_BRANCH_PREFIX and parts[1]:
        return parts[1]
    return None


# --- DAG ids -----------------------------------------------------------------------------------------

#: Every Leviathan DAG id starts with this (target DAGs and the DAGs of broken target files).
DAG_ID_PREFIX: Final = "leviathan__"
#: The DAG of a target file that cannot be loaded: ``leviathan__invalid__<file stem>``.
INVALID_DAG_ID_PREFIX: Final = f"{DAG_ID_PREFIX}invalid__"


def dag_id(target_id: str) -> str:
    """The cycle DAG of target ``target_id``."""
    return f"{DAG_ID_PREFIX}{target_id}"


def invalid_dag_id(name: str) -> str:
    """The DAG that reports a broken target file (``name``: the file stem, already made id-safe)."""
    return f"{INVALID_DAG_ID_PREFIX}{name}"


def dag_target_id(dag: str | None) -> str | None:
    """The target id of a cycle DAG id; None for other DAGs, including the DAGs of broken files."""
    if not dag or not dag.startswith(DAG_ID_PREFIX) or dag.startswith(INVALID_DAG_ID_PREFIX):
        return None
    return dag[len(DAG_ID_PREFIX):] or None


# --- the cycle DAG's task ids --------------------------------------------------------------------------

#: Reads the backlog, checks the guardrails and branches; on a skip it also writes the cycle's evidence and
#: skips every other task but ``skip``, so an idle cycle is this one task process.
TASK_PLAN: Final = "plan"
#: Kubernetes backend only: builds the pod's spec before ``run_worker``.
TASK_PREPARE_ATTEMPT: Final = "prepare_attempt"
TASK_RUN_WORKER: Final = "run_worker"
#: The plain-skip branch: an EmptyOperator leaf (no task process) that turns the run red if ``plan`` ends
#: failed after it skipped the rest (e.g. Airflow could not store its success and asset event).
TASK_SKIP: Final = "skip"
TASK_OPEN_PULL_REQUEST: Final = "open_pull_request"
#: Writes the evidence of a cycle that attempted (or whose ``plan`` failed).
TASK_RECORD_EVIDENCE: Final = "record_evidence"
#: Fails the run of a cycle that hit an error (after an attempt, or directly after ``plan``'s error skip).
TASK_CYCLE_OUTCOME: Final = "cycle_outcome"
#: The single task of a broken target file's DAG.
TASK_CONFIG_ERROR: Final = "config_error"
#: ``approval: plan``: a human approves the selected task and its plan before the worker runs.
TASK_APPROVE_PLAN: Final = "approve_plan"
#: ``approval: pull_request``: a human approves the final diff before anything is pushed.
TASK_APPROVE_PULL_REQUEST: Final = "approve_pull_request"

#: Every task id a Leviathan DAG can have.
TASK_IDS: Final = frozenset({
    TASK_PLAN, TASK_PREPARE_ATTEMPT, TASK_RUN_WORKER, TASK_SKIP,
    TASK_OPEN_PULL_REQUEST, TASK_RECORD_EVIDENCE, TASK_CYCLE_OUTCOME, TASK_CONFIG_ERROR,
    TASK_APPROVE_PLAN, TASK_APPROVE_PULL_REQUEST,
})
#: The tasks that may write a cycle's one record: ``record_evidence`` after an attempt, ``plan`` on a skip,
#: an approval gate on a rejection.
RECORD_TASK_IDS: Final = (TASK_RECORD_EVIDENCE, TASK_PLAN, TASK_APPROVE_PLAN, TASK_APPROVE_PULL_REQUEST,
                          TASK_CONFIG_ERROR)

# --- XCom keys -----------------------------------------------------------------------------------------

#: Airflow's key for a task's return value (the PR, the record; ``run_worker``'s AttemptResult document on both
#: backends, the local one's with ``attempt_started_at``).
XCOM_RETURN_VALUE: Final = "return_value"
#: ``plan``: the ReadResult (the pinned commit and the backlog) the later tasks work on.
XCOM_READ: Final = "read"
#: ``plan``: the GuardrailResult.
XCOM_GUARDRAILS: Final = "guardrails"
#: The cycle's evidence record for ``cycle_outcome``: pushed by ``record_evidence``, an approval gate's
#: rejection and ``plan``'s error skip; a plain skip's record is only its asset event.
XCOM_RECORD: Final = "record"
#: ``open_pull_request``: why delivery was refused (``code``, ``message``).
XCOM_REJECTION: Final = "rejection"
#: ``prepare_attempt``: when the pod's attempt was prepared (to tell a timeout from a crash).
XCOM_PREPARED_AT: Final = "prepared_at"
#: ``prepare_attempt``: the attempt spec the pod reads.
XCOM_SPEC: Final = "spec"
#: ``prepare_attempt``: the task id as a Kubernetes label value.
XCOM_TASK_LABEL: Final = "task_label"
#: An approval gate: the human decision (ApprovalEvidence: choice, who, when).
XCOM_APPROVAL: Final = "approval"


# --- the dashboard issue -----------------------------------------------------------------------------

#: The label of a target's dashboard issue: with its title, how Leviathan finds the issue it created when
#: the answer to the create was lost (only people with triage access can label issues).
DASHBOARD_LABEL: Final = "leviathan-dashboard"


#: The asset whose events are the global switch's changes made through Leviathan. A path of
#: its own: Airflow normalizes a declared ``leviathan://autonomy`` to ``leviathan://autonomy/``.
AUTONOMY_ASSET_URI: Final = "leviathan://autonomy/global"
AUTONOMY_ASSET_NAME: Final = "leviathan_autonomy_global"
#: Switch changes made with Airflow's own tools, found in its audit log (evidence only, never a switch).
OUTSIDE_CHANGES_ASSET_URI: Final = "leviathan://autonomy/outside"
OUTSIDE_CHANGES_ASSET_NAME: Final = "leviathan_autonomy_outside"
#: Where switch changes were recorded before (every target's too); still shown, never read as the switch.
LEGACY_AUTONOMY_ASSET_URI: Final = "leviathan://autonomy"


def evidence_asset_uri(target_id: str) -> str:
    """The asset a target's evidence records are events of (the DAG's outlet, every history read)."""
    return f"leviathan://targets/{target_id}/evidence"


def change_asset_uri(target_id: str) -> str:
    """The asset a forge webhook delivery records a change on: a ``webhooks: true`` target's DAG runs on it."""
    return f"leviathan://targets/{target_id}/changed"


def change_asset_name(target_id: str) -> str:
    return f"leviathan_changed__{target_id}"
#: The asset whose events are the fleet breaker's resets (``leviathan breaker reset --fleet``, Spider).
FLEET_BREAKER_ASSET_URI: Final = "leviathan://fleet/breaker"
FLEET_BREAKER_ASSET_NAME: Final = "leviathan_fleet_breaker"

#: The fleet file's names in the targets folder (core/fleet.py); never read as a target file.
FLEET_FILE_NAMES = ("fleet.yaml", "fleet.yml")
