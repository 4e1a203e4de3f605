"""The one decision builder: may this cycle run a worker, on which task, as which attempt.

The DAG's ``plan``, ``leviathan plan`` and the Leviathan view all call :func:`build_decision` with a
:class:`DecisionInputs`. They differ only in where the inputs come from (the forge and the evidence
window; a STATE.json file; the newest record), never in how they are judged: the recipe checks, the
protected paths (the target's list plus the scripts its recipes run), the continuation of an open PR and
the sandbox gate all happen here, so the three always give the same answer for the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.contracts.xcom import AttemptPlan, CycleError, GuardrailResult, ReadResult
from leviathan_lib.core.backlog import Backlog
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.fleet import FLEET_STATE_CHECK, FleetState, fleet_checks
from leviathan_lib.core.guardrails import (
    AttemptRecord,
    Budgets,
    Check,
    ClosedPR,
    CycleState,
    Decision,
    HeldBranch,
    OpenPR,
    ReasonCode,
    decide,
    sandbox_gate,
    state_budgets,
)
from leviathan_lib.core.names import agent_branch
from leviathan_lib.core.read_limits import TooManyTasks
from leviathan_lib.cycle.protected import protected_for
from leviathan_lib.cycle.steps import ContinueRequest, apply_recipe_checks, check_names
from leviathan_lib.evidence.records import CI_FIX_WHY, REVIEW_ROUND_WHYS, Ledger, LedgerHeld

#: Why a refresh continues its PR (:mod:`leviathan_lib.cycle.lifecycle`); it has its own bound.
REFRESH_WHY = "pr_conflicted"
#: Why an attempt continues a PR as its task's next attempt: review feedback (:mod:`leviathan_lib.cycle.feedback`)
#: or red CI (:mod:`leviathan_lib.cycle.ci_sync`). Every task rule applies to it (a CI fix is no review round).
FEEDBACK_WHYS = REVIEW_ROUND_WHYS | {CI_FIX_WHY}
CONTINUE_CHECK = "continue_pr"
#: The check naming the two budgets of the task a run attempts.
BUDGETS_CHECK = "budgets"
#: Task reasons that are the very PR (or branch awaiting CI) a continuation delivers to.
_HELD_BY_ITSELF = frozenset({ReasonCode.PR_OPEN_FOR_TASK, ReasonCode.AWAITING_CI})
#: Task reasons that do not stop a continuation no human asked for (a CI fix is no review round).
_NOT_A_ROUND = frozenset({ReasonCode.REVIEW_ROUNDS_EXHAUSTED})
#: Cycle-level reasons that stop an attempt on an open PR too; the others are about opening new PRs.
_CONTINUE_BLOCKERS = frozenset({ReasonCode.AUTONOMY_DISABLED, ReasonCode.FORGE_STATE_UNKNOWN,
                                ReasonCode.CIRCUIT_BREAKER_OPEN, ReasonCode.LLM_BUDGET_EXHAUSTED,
                                ReasonCode.FLEET_STATE_UNKNOWN, ReasonCode.FLEET_BREAKER_OPEN,
                                ReasonCode.TEAM_BUDGET_EXHAUSTED})


class SandboxSeen(BaseModel):
    """The recipe sandbox as a worker machine last saw it (the view runs on the API server, which may have
    no bubblewrap: it reports the newest cycle's check instead of probing its own machine)."""

    problem: str | None = None
    label: str = "bwrap"


class DecisionInputs(BaseModel):
    """Everything a decision depends on. ``state.attempt_counts`` are all attempts per task (they number the
    next attempt); ``state.failures`` and ``state.review_rounds`` are the two budgets per task definition."""

    target: TargetConfig
    read: ReadResult
    state: CycleState = Field(default_factory=CycleState)
    continue_request: ContinueRequest | None = None
    #: None: probe this machine (the DAG's ``plan``, the CLI); a value: what a worker machine saw.
    sandbox: SandboxSeen | None = None
    #: The other targets' evidence (the view gives it; ``unknown`` fails closed); None: not evaluated
    #: (``leviathan plan`` without a ``fleet`` in its STATE.json, a replay).
    fleet: FleetState | None = None
    #: The DAG's ``plan``: reads the fleet state only when this cycle would attempt (see :func:`_fleet`).
    fleet_reader: Callable[[], FleetState] | None = Field(default=None, exclude=True)


class PlanState(CycleState):
    """``leviathan plan --state STATE.json``: the guardrails' state plus what the DAG learns from the
    forge and the ledger (an open PR to continue)."""

    continue_pr: ContinueRequest | None = None
    fleet: FleetState | None = None


def guardrail_inputs(ledger: Ledger) -> tuple[list[AttemptRecord], list[ClosedPR]]:
    """The ledger as the guardrails' typed inputs (its recent attempts oldest first; closed PRs, then human
    rejections); the attempts per task are ``ledger.attempt_counts``. Only a refresh is a ``continued_pr``
    attempt for them: a review-feedback attempt is the task's next attempt like any other."""
    attempts = sorted((AttemptRecord(task_id=a.task_id, outcome=a.outcome, finished_at=a.finished_at,
                                     cost_usd=a.cost_usd, continued_pr=a.continue_why == REFRESH_WHY)
                       for a in ledger.recent_attempts), key=lambda a: a.finished_at)
    closed = [ClosedPR(task_id=c.task_id, task_hash=c.task_hash) for c in ledger.closed_prs]
    rejected = [ClosedPR(task_id=c.task_id, task_hash=c.task_hash, by_human_gate=True) for c in ledger.rejected]
    ci_failed = [ClosedPR(task_id=c.task_id, task_hash=c.task_hash, by_ci=True) for c in ledger.ci_failed]
    return attempts, closed + rejected + ci_failed


def state_from_ledger(ledger: Ledger, *, global_autonomy: bool, now: datetime | None,
                      open_prs: list[OpenPR] | None, closed: Iterable[ClosedPR] = (),
                      commit_sha: str | None = None, held: list[LedgerHeld] | None = None) -> CycleState:
    """The guardrails' state from the history a ledger carries; ``open_prs`` from the forge (None: unknown)
    or :func:`ledger_open_prs`, ``closed`` the closures seen since (this cycle's PR sync), ``held`` the
    branches still waiting for green CI after it (default: the ledger's; each counts as an open PR). The
    tasks whose checks were red at base count only at the commit they were red at, ``commit_sha`` (the one
    decided on)."""
    attempts, known_closed = guardrail_inputs(ledger)
    switch = ledger.switch
    paused = None if switch is None or switch.enabled else \
        f"{switch.by} at {switch.changed_at.isoformat(timespec='seconds')} ({switch.reason})"
    red = sorted(task for task, sha in ledger.red_at_base.items() if commit_sha is not None and sha == commit_sha)
    waiting = ledger.held_branches if held is None else held
    return CycleState(autonomy_enabled=global_autonomy, admin_paused=paused, open_prs=open_prs, attempts=attempts,
                      attempt_counts=dict(ledger.attempt_counts), failures=dict(ledger.failures),
                      review_rounds=dict(ledger.review_rounds), breaker_reset_at=ledger.breaker_reset_at,
                      closed_prs=[*known_closed, *closed], prs_opened_at=list(ledger.prs_opened_at), now=now,
                      red_at_base=red, held_branches=[HeldBranch(branch=h.branch, task_id=h.task_id) for h in waiting])


def ledger_open_prs(ledger: Ledger) -> list[OpenPR]:
    """The PRs the ledger holds open (a replay and the view do not ask the forge)."""
    return [OpenPR(number=pr.number, branch=pr.branch, task_id=pr.task_id) for pr in ledger.open_prs]


def ledger_budgets(target: TargetConfig, ledger: Ledger) -> Budgets:
    """The two budgets per task definition as the ledger counts them (the PR sync's feedback and CI fixes)."""
    return Budgets(failures=dict(ledger.failures), rounds=dict(ledger.review_rounds),
                   max_failures=target.max_attempts_per_task, max_rounds=target.max_review_rounds)


def build_decision(inputs: DecisionInputs) -> GuardrailResult:
    """The guardrails' decision and, when it runs, the attempt (never for a replay). Never raises for bad input."""
    target, read, state = inputs.target, inputs.read, inputs.state
    if read.error:
        return GuardrailResult(error=read.error)
    try:
        backlog, _ = read.parsed_backlog()
    except ValidationFailed as exc:  # a read that did not parse it first (the view's per-commit read)
        code = exc.code if isinstance(exc, TooManyTasks) else "backlog_invalid"
        return GuardrailResult(error=CycleError(code=code, message="; ".join(str(p) for p in exc.problems)))
    backlog = apply_recipe_checks(backlog, read.recipes_text, target.recipes_path,
                                  llm_enabled=target.executor == "llm", required_checks=target.required_checks,
                                  attempt_timeout_seconds=target.attempt_timeout_seconds)
    decision = decide(target, backlog, state, protected=protected_for(target, read.recipes_text))
    cont = inputs.continue_request
    decision = _fleet(decision, inputs, attempts=decision.decision == "run" or (
        cont is not None and state.open_prs is not None))
    if cont is not None and state.open_prs is not None:
        decision = continue_decision(decision, backlog, cont.task_id, cont.pr)
    decision = _budgets(target, backlog, state, decision)
    decision = _sandbox(target, backlog, decision, inputs.sandbox)
    result = GuardrailResult(decision=decision, replay=read.as_of is not None,
                             task_problems=[p for entry in backlog.invalid for p in entry.problems])
    if decision.decision == "run" and decision.task_id and not result.replay:
        result.attempt = _attempt_plan(backlog, decision, state, cont)
    return result


def _fleet(decision: Decision, inputs: DecisionInputs, *, attempts: bool) -> Decision:
    """Add the fleet's checks (:mod:`leviathan_lib.core.fleet`) after the target's own cycle rules; a failed one
    stops the cycle like any cycle-level rule (then ``no_eligible_task`` is not the reason).

    The fleet limits gate attempts only, and reading the fleet means reading every target's evidence, so they
    are evaluated only when this cycle ``attempts`` (a task to run, or a PR to continue), and the DAG's
    ``plan`` reads the state (``fleet_reader``) only then: an idle fleet's cycles cost one target's reads
    each, not the whole fleet's. The view and ``leviathan plan`` decide alike from a state they were given."""
    state, fleet, reader = inputs.state, inputs.fleet, inputs.fleet_reader
    if fleet is None and reader is None:
        return decision
    if not attempts:  # the same whether the state was given (the view, the CLI) or would be read (the DAG)
        return decision.model_copy(update={"checks": [*decision.checks, Check(
            name=FLEET_STATE_CHECK, passed=True, detail=FLEET_NOT_READ)]})
    if fleet is None and reader is not None:
        fleet = reader()
    assert fleet is not None
    found = fleet_checks(fleet, state, state.now or datetime.now(UTC))
    failed = [reason for _, reason in found if reason is not None]
    if not failed:
        return decision.model_copy(update={"checks": [*decision.checks, *(c for c, _ in found)]})
    kept = [r for r in decision.reasons if r != ReasonCode.NO_ELIGIBLE_TASK]
    return decision.model_copy(update={"decision": "skip", "task_id": None,
                                       "reasons": [*kept, *dict.fromkeys(failed)],
                                       "checks": [*decision.checks, *(c for c, _ in found)]})


#: What an idle cycle records in place of the fleet's checks.
FLEET_NOT_READ = "not read: this cycle attempts nothing, and the fleet limits gate attempts only"


def _attempt_plan(backlog: Backlog, decision: Decision, state: CycleState,
                  cont: ContinueRequest | None) -> AttemptPlan:
    assert decision.task_id is not None
    task = backlog.by_id()[decision.task_id]
    earlier = (state.attempt_counts.get(task.id, 0) if state.attempt_counts is not None
               else sum(1 for a in state.attempts if a.task_id == task.id))
    number = 1 + earlier
    pr = cont.pr if cont and cont.task_id == task.id and _continuing(decision) else None
    return AttemptPlan(task_id=task.id, attempt=number, branch=pr.branch if pr else agent_branch(task.id, number),
                       task_hash=task.definition_hash(), recipe=task.recipe or "", continue_pr=pr)


def _budgets(target: TargetConfig, backlog: Backlog, state: CycleState, decision: Decision) -> Decision:
    """A run names both budgets of the task it attempts (what ``leviathan plan``, the log, the view and the
    evidence all show)."""
    if decision.decision != "run" or decision.task_id is None:
        return decision
    task = backlog.by_id()[decision.task_id]
    detail = state_budgets(target, state, backlog).describe(task.id, task.definition_hash())
    return decision.model_copy(update={"checks": [*decision.checks,
                                                  Check(name=BUDGETS_CHECK, passed=True, detail=detail)]})


def _continuing(decision: Decision) -> bool:
    return any(c.name == CONTINUE_CHECK and c.passed for c in decision.checks)


def continue_decision(decision: Decision, backlog: Backlog, task_id: str, cont: ContinuePr) -> Decision:
    """The decision to deliver to open PR ``cont`` of task ``task_id`` instead of what ``decide`` chose,
    unless a rule protecting the target failed or the task can no longer run (then a failed check says so).
    Review feedback is the task's next attempt, so every task rule but its own open PR applies too
    (``ready``, status, scope, protected paths, ``max_attempts_per_task``, ``max_review_rounds``; a CI fix is
    no review round)."""
    blockers = [r for r in decision.reasons if r in _CONTINUE_BLOCKERS]
    if cont.why in FEEDBACK_WHYS:  # the task's next attempt: it must still be one the backlog allows
        verdict = next((v for v in decision.tasks if v.id == task_id), None)
        ignored = _HELD_BY_ITSELF if cont.why in REVIEW_ROUND_WHYS else _HELD_BY_ITSELF | _NOT_A_ROUND
        blockers += [r for r in (verdict.reasons if verdict else []) if r not in ignored]
    where = f"PR #{cont.number}" if cont.number is not None else "pushed branch, no PR yet"
    detail = f"{where} ({cont.branch}): {cont.why}"
    if blockers or task_id not in backlog.by_id():
        why = ", ".join(blockers) if blockers else f"task {task_id} cannot run (invalid)"
        check = Check(name=CONTINUE_CHECK, passed=False, detail=f"{detail}; not attempted: {why}")
        return decision.model_copy(update={"checks": [*decision.checks, check]})
    check = Check(name=CONTINUE_CHECK, passed=True, detail=f"{detail}; this cycle's attempt delivers to it")
    return decision.model_copy(update={"decision": "run", "task_id": task_id, "reasons": [],
                                       "checks": [*decision.checks, check]})


def _sandbox(target: TargetConfig, backlog: Backlog, decision: Decision, seen: SandboxSeen | None) -> Decision:
    """A run of a recipe task, or of any task with checks, needs its sandbox: probe bubblewrap on this machine
    first (fail closed).

    The LLM executor runs no recipe code (only the repository's checks, when there are any), and a Kubernetes
    pod is its own sandbox: neither probes.
    """
    if decision.decision != "run" or decision.task_id is None:
        return decision
    task = backlog.by_id()[decision.task_id]
    if not task.recipe and not check_names(target.required_checks, task):
        return decision
    from leviathan_lib.worker.sandbox import mode_label, probe, required_mode

    if seen is not None:
        return sandbox_gate(decision, seen.problem, label=seen.label)
    mode = required_mode(target)
    return sandbox_gate(decision, probe() if mode == "bwrap" else None, label=mode_label(mode))
