"""The guardrails: decide whether a target may run one task this cycle, and which.

Pure functions over typed inputs (no I/O, no Airflow import) so every rule can be tested with plain
tables, and so ``leviathan plan`` shows exactly what the DAG would decide. Every task is evaluated and
every failed rule reported, so an operator can always see *why* nothing ran.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from leviathan_lib.core.backlog import DONE_STATUSES, PENDING_STATUSES, Backlog, InvalidTask, Task
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX, branch_task_id
from leviathan_lib.core.scope import Protected, Scope
from leviathan_lib.core.until import BREAKER_UNTIL, budget_frees_at, budget_until, next_pr_after, next_pr_at
from leviathan_lib.core.yamlsrc import field_name

FAILED_OUTCOMES = frozenset({"failed", "timed_out"})


class ReasonCode(StrEnum):
    """Stable machine-readable reasons; dashboards and alerts key on these strings."""

    # Cycle level, in the order they are reported.
    AUTONOMY_DISABLED = "autonomy_disabled"
    FORGE_STATE_UNKNOWN = "forge_state_unknown"
    OPEN_PR_LIMIT = "open_pr_limit"
    #: ``max_prs_per_hour`` PRs were opened in the hour before now (like Renovate's prHourlyLimit).
    PR_HOURLY_LIMIT = "pr_hourly_limit"
    CIRCUIT_BREAKER_OPEN = "circuit_breaker_open"
    #: The target's ``llm_daily_usd`` is spent (model cost of its attempts over the last 24 hours).
    LLM_BUDGET_EXHAUSTED = "llm_budget_exhausted"
    NO_ELIGIBLE_TASK = "no_eligible_task"
    # Task level, in the order they are reported.
    NOT_READY = "not_ready"
    STATUS_NOT_PENDING = "status_not_pending"
    DEPENDENCIES_INCOMPLETE = "dependencies_incomplete"
    SCOPE_VIOLATION = "scope_violation"
    #: The task definition failed ``max_attempts_per_task`` times (failed, timed out, refused by a guardrail).
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    PR_OPEN_FOR_TASK = "pr_open_for_task"
    INVALID_TASK = "invalid_task"
    #: A human closed this task's PR without merging; it waits until its definition changes.
    PR_CLOSED_UNCHANGED = "pr_closed_unchanged"
    # Decided after the rules above, from the machine the worker runs on (see :func:`sandbox_gate`).
    #: The recipe would need the OS sandbox (bubblewrap) and this machine cannot build it: fail closed.
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    #: The task's allowed_paths cover a path only humans change (recipes, their scripts, .github/, ...).
    PROTECTED_PATH = "protected_path"
    # PR lifecycle, decided by the PR sync of ``plan`` (:mod:`leviathan_lib.cycle.lifecycle`), never by ``decide``.
    #: Someone other than Leviathan pushed to the PR's branch: never rewritten, closed or deleted again.
    HUMAN_EDITED = "human_edited"
    #: The open PR's branch was deleted by hand: Leviathan leaves the PR alone.
    PR_BRANCH_DELETED = "pr_branch_deleted"
    #: The open PR conflicts with its base: it is brought up to date (the refresh attempt's ``why``).
    PR_CONFLICTED = "pr_conflicted"
    #: The PR conflicts again but its task's refreshes reached ``max_pr_refreshes``.
    PR_REFRESH_LIMIT = "pr_refresh_limit"
    #: The task's definition changed while its PR was open: the PR was closed, the task runs again.
    PR_SUPERSEDED = "pr_superseded"
    # Review feedback and comment commands on Leviathan's PRs (:mod:`leviathan_lib.core.commands`).
    #: A comment starting with ``/leviathan`` that is not exactly ``/leviathan retry`` (junk after it).
    COMMAND_MALFORMED = "command_malformed"
    #: ``/leviathan <verb>`` with a verb Leviathan does not know.
    COMMAND_UNKNOWN = "command_unknown"
    #: ``/leviathan retry`` from a user without write permission: ignored and recorded.
    COMMAND_NOT_PERMITTED = "command_not_permitted"
    #: "Changes requested" from a user without write permission: ignored and recorded.
    REVIEW_NOT_PERMITTED = "review_not_permitted"
    #: A permitted request on a PR someone else pushed to: Leviathan never rewrites that branch.
    FEEDBACK_HUMAN_EDITED = "feedback_human_edited"
    #: A permitted request for a task definition that failed ``max_attempts_per_task`` times.
    FEEDBACK_ATTEMPTS_EXHAUSTED = "feedback_attempts_exhausted"
    # Task level, newer than the codes above (the order of existing codes is stable).
    #: A human rejected this task at its approval gate (or nobody answered in time); it waits until its
    #: definition changes, like a closed PR.
    REJECTED_BY_HUMAN = "rejected_by_human"
    #: The repository's own checks failed on the pinned commit before any change (``checks_red_at_base: skip``):
    #: the task waits for a new commit. The repository's state, never a failure of the worker.
    CHECKS_RED_AT_BASE = "checks_red_at_base"
    # CI on Leviathan's PRs (:mod:`leviathan_lib.cycle.ci_sync`).
    #: CI failed on the head Leviathan pushed: an attempt fixes it (the continuation's ``why``).
    CI_FAILED = "ci_failed"
    #: CI failed again, but the PR used ``max_ci_fix_attempts`` (or its task ``max_attempts_per_task``).
    CI_FIX_LIMIT = "ci_fix_limit"
    #: Task level: its ``agent/`` branch is pushed and its PR opens once CI on it passes (``checks_pass``).
    AWAITING_CI = "awaiting_ci"
    #: The task definition used ``max_review_rounds`` human rounds (review feedback, ``/leviathan retry``, gate
    #: rejections): a further request is recorded, not served (its PR stays open for humans); a task reason too.
    REVIEW_ROUNDS_EXHAUSTED = "review_rounds_exhausted"
    # Fleet level (:mod:`leviathan_lib.core.fleet`), added by the decision builder after the rules above.
    #: The other targets' evidence (or the fleet file) could not be read: the fleet limits are unknown.
    FLEET_STATE_UNKNOWN = "fleet_state_unknown"
    #: ``fleet_max_open_prs`` PRs are open across the targets of this forge account.
    FLEET_OPEN_PRS_LIMIT = "fleet_open_prs_limit"
    #: ``fleet_max_prs_per_hour`` PRs were opened across the targets of this forge account in the last hour.
    FLEET_PR_HOURLY_LIMIT = "fleet_pr_hourly_limit"
    #: Too many of the fleet's attempts of the last 24 h failed: every target stops until an admin resets it.
    FLEET_BREAKER_OPEN = "fleet_breaker_open"
    #: The target's team reached its ``max_open_prs`` or spent its ``llm_daily_usd`` (the fleet file's ``teams``).
    TEAM_BUDGET_EXHAUSTED = "team_budget_exhausted"
    # Ticks on the dashboard issue (:mod:`leviathan_lib.cycle.ticks`), refused like commands.
    #: A ticked box for a PR that is no longer open (or not Leviathan's): nothing to do.
    DASHBOARD_TICK_STALE = "dashboard_tick_stale"
    #: The dashboard was edited beyond its checkboxes: no tick is read from it, and its body is restored.
    DASHBOARD_TAMPERED = "dashboard_tampered"


class _State(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class OpenPR(_State):
    number: int
    branch: str
    task_id: str | None = None
    #: The branch tip the forge reports (None when unknown, e.g. a replay).
    head_sha: str | None = None


class HeldBranch(_State):
    """A pushed ``agent/`` branch whose PR is not open yet: it waits for green CI."""

    branch: str
    task_id: str


class AttemptRecord(_State):
    task_id: str
    outcome: Literal["succeeded", "failed", "timed_out"]
    finished_at: AwareDatetime
    #: Model cost of the attempt (0 for recipes), from its evidence.
    cost_usd: Annotated[float, Field(ge=0, strict=False)] = 0.0
    #: The attempt brought its open PR up to date (a refresh): it counts for the breaker and the budget, not
    #: toward ``max_attempts_per_task`` (refreshes have their own bound, ``max_pr_refreshes``). An attempt
    #: for review feedback is not one: a failure of it counts like any other.
    continued_pr: bool = False


class TaskCount(_State):
    """How many times a budget was used by one definition of a task (its ``definition_hash``): a task whose
    definition changes starts afresh."""

    task_hash: str
    count: Annotated[int, Field(ge=0)]

    def bumped(self, task_hash: str) -> TaskCount:
        """One more use by ``task_hash``: counted on, or from one for a new definition."""
        return TaskCount(task_hash=task_hash, count=self.count + 1 if task_hash == self.task_hash else 1)


def count_use(counts: dict[str, TaskCount], task_id: str, task_hash: str) -> dict[str, TaskCount]:
    """``counts`` with one more use of ``task_id``'s definition ``task_hash``."""
    return {**counts, task_id: counts.get(task_id, TaskCount(task_hash=task_hash, count=0)).bumped(task_hash)}


@dataclass(frozen=True)
class Budgets:
    """A task definition's two budgets: its failed attempts (``max_attempts_per_task``) and the human rounds
    on it (``max_review_rounds``), each counted per task id and definition hash."""

    failures: dict[str, TaskCount]
    rounds: dict[str, TaskCount]
    max_failures: int
    max_rounds: int

    @staticmethod
    def used(counts: dict[str, TaskCount], task_id: str, task_hash: str) -> int:
        found = counts.get(task_id)
        return found.count if found is not None and found.task_hash == task_hash else 0

    def failures_spent(self, task_id: str, task_hash: str) -> bool:
        return self.used(self.failures, task_id, task_hash) >= self.max_failures

    def rounds_spent(self, task_id: str, task_hash: str) -> bool:
        return self.used(self.rounds, task_id, task_hash) >= self.max_rounds

    def describe(self, task_id: str, task_hash: str) -> str:
        """Both budgets of one task definition, in words (the ``budgets`` check, the view, the evidence)."""
        return (f"task {task_id} (definition {task_hash}): {self.used(self.failures, task_id, task_hash)} of "
                f"{self.max_failures} failed attempt(s) (max_attempts_per_task), "
                f"{self.used(self.rounds, task_id, task_hash)} of {self.max_rounds} review round(s) "
                f"(max_review_rounds)")


class ClosedPR(_State):
    """A PR a human closed without merging, or an attempt a human rejected at its approval gate
    (``by_human_gate``): the task definition (hash) it delivered."""

    task_id: str
    task_hash: str
    by_human_gate: bool = False
    #: Its branch, held for green CI (``pr_creation: checks_pass``), failed CI with no fix left and was deleted.
    by_ci: bool = False


class CycleState(_State):
    """What the guardrails need to know about the world beyond the target file and the backlog."""

    #: The global switch (an Airflow Variable), ANDed with the target's own ``autonomy_enabled``.
    autonomy_enabled: bool = True
    #: An admin's pause of this target through Leviathan still stands (its DAG was unpaused outside
    #: Leviathan): who paused it, when and why; None when no such pause stands.
    admin_paused: str | None = None
    #: None means the forge could not be read: the cycle fails closed.
    open_prs: list[OpenPR] | None = Field(default_factory=list)
    #: Oldest first.
    attempts: list[AttemptRecord] = Field(default_factory=list)
    #: Attempts per task over the whole history (the DAG: the evidence ledger's, which keeps only the
    #: recent ``attempts``); None counts ``attempts``. They number the next attempt.
    attempt_counts: dict[str, Annotated[int, Field(ge=0)]] | None = None
    #: Failed attempts per task definition (``max_attempts_per_task``; the DAG: the ledger's); None counts the
    #: failed ``attempts`` that were no refresh, whatever their definition.
    failures: dict[str, TaskCount] | None = None
    #: Human rounds per task definition (``max_review_rounds``; the DAG: the ledger's).
    review_rounds: dict[str, TaskCount] = Field(default_factory=dict)
    breaker_reset_at: AwareDatetime | None = None
    #: PRs closed without merge, oldest first; a task is retried only once its definition changes.
    closed_prs: list[ClosedPR] = Field(default_factory=list)
    #: When the decision is made: the daily model budget counts back 24 hours from it (None: the clock);
    #: without it the hourly PR limit is not evaluated (its check says so).
    #: When Leviathan opened its recent PRs (the evidence).
    prs_opened_at: list[AwareDatetime] = Field(default_factory=list)
    now: AwareDatetime | None = None
    #: Tasks whose attempt found the repository's checks failing on the commit this decision reads
    #: (:func:`leviathan_lib.cycle.decision.state_from_ledger` keeps only those of that commit).
    red_at_base: list[str] = Field(default_factory=list)
    #: ``agent/`` branches pushed whose PR opens once CI passes (``pr_creation: checks_pass``): each counts
    #: toward ``max_open_prs`` like an open PR, and holds its task (``awaiting_ci``).
    held_branches: list[HeldBranch] = Field(default_factory=list)


_S = TypeVar("_S", bound=CycleState)


class Check(BaseModel):
    name: str
    passed: bool
    detail: str


class TaskVerdict(BaseModel):
    id: str
    eligible: bool
    reasons: list[ReasonCode]


class Decision(BaseModel):
    """The ``leviathan plan`` document: ``model_dump(mode="json")`` is the exact JSON shape."""

    target_id: str
    decision: Literal["run", "skip"]
    task_id: str | None
    reasons: list[ReasonCode]
    checks: list[Check]
    tasks: list[TaskVerdict]


def parse_state(text: str, source: str, model: type[_S]) -> _S:
    """Parse a STATE.json document into ``model`` strictly (a string is never a boolean, timestamps need a
    zone)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        message = f"invalid JSON: {getattr(exc, 'msg', exc)}"
        raise ValidationFailed([Problem(source, "", message, getattr(exc, "lineno", None))]) from None
    if not isinstance(data, dict):
        raise ValidationFailed([Problem(source, "", f"expected a JSON object, got {type(data).__name__}")])
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(Problem(source, field_name(err["loc"]), message))
        raise ValidationFailed(problems) from None


def _pr_task_id(pr: OpenPR) -> str | None:
    """The task an open PR delivers: its recorded task id, else the ``agent/<task_id>/…`` branch part."""
    return pr.task_id or branch_task_id(pr.branch)


def failure_streak(attempts: Iterable[AttemptRecord], reset_at: datetime | None) -> int:
    """Failed attempts in a row, newest first, after the last breaker reset: the breaker's one measure.

    The guardrails, the cycle record (``breaker_opened``) and the fleet overview all count with this.
    """
    considered = sorted((a for a in attempts if reset_at is None or a.finished_at > reset_at),
                        key=lambda a: a.finished_at)  # stable: equal timestamps keep the given order
    streak = 0
    for attempt in reversed(considered):
        if attempt.outcome not in FAILED_OUTCOMES:
            break
        streak += 1
    return streak


#: What one cycle-level rule found: the checks it reports and its reason when it failed.
_RuleResult = tuple[list[Check], ReasonCode | None]


def _autonomy_rule(target: TargetConfig, state: CycleState) -> _RuleResult:
    target_on, global_on = target.autonomy_enabled, state.autonomy_enabled
    switch = "on" if global_on else "off"
    detail = f"target autonomy_enabled={str(target_on).lower()}, global switch={switch}"
    if state.admin_paused:
        detail += (f"; target paused by {state.admin_paused} and unpaused outside Leviathan: it stays off until "
                   "an admin resumes it in the Leviathan view or with `leviathan resume --target`")
    check = Check(name="autonomy", passed=target_on and global_on and not state.admin_paused, detail=detail)
    return [check], None if check.passed else ReasonCode.AUTONOMY_DISABLED


def _forge_rule(target: TargetConfig, state: CycleState) -> _RuleResult:
    if state.open_prs is None:
        # Fail closed: an unknown count cannot pass, but the limit itself was not observed.
        return [Check(name="forge_state", passed=False, detail="the forge could not be read"),
                Check(name="open_prs", passed=False, detail="unknown: the forge could not be read")], \
            ReasonCode.FORGE_STATE_UNKNOWN
    agent_prs = [pr for pr in state.open_prs if pr.branch.startswith(AGENT_BRANCH_PREFIX)]
    held = [b for b in state.held_branches if b.branch not in {pr.branch for pr in agent_prs}]
    under_limit = len(agent_prs) + len(held) < target.max_open_prs
    waiting = f" and {len(held)} pushed branch(es) awaiting CI" if held else ""
    return [Check(name="forge_state", passed=True, detail="open pull requests known"),
            Check(name="open_prs", passed=under_limit,
                  detail=f"{len(agent_prs)} open agent/ PR(s){waiting}, limit {target.max_open_prs}")], \
        None if under_limit else ReasonCode.OPEN_PR_LIMIT


def _hourly_rule(target: TargetConfig, state: CycleState) -> _RuleResult:
    limit = target.max_prs_per_hour
    if state.now is None:
        return [Check(name="prs_per_hour", passed=True, detail=f"not evaluated (no time given), limit {limit}")], None
    since = state.now - timedelta(hours=1)
    recent = sum(1 for at in state.prs_opened_at if since < at <= state.now)
    detail = f"{recent} PR(s) opened in the last hour, limit {limit}"
    free_at = next_pr_at(state.prs_opened_at, now=state.now, limit=limit)
    if free_at is not None:
        detail += f"; {next_pr_after(free_at, state.now)}"
    check = Check(name="prs_per_hour", passed=free_at is None, detail=detail)
    return [check], None if check.passed else ReasonCode.PR_HOURLY_LIMIT


def _breaker_rule(target: TargetConfig, state: CycleState) -> _RuleResult:
    threshold = target.circuit_breaker_failures
    streak = failure_streak(state.attempts, state.breaker_reset_at)
    since = f" since reset at {state.breaker_reset_at.isoformat()}" if state.breaker_reset_at else ""
    detail = f"{streak} consecutive failed attempt(s){since}, threshold {threshold}"
    if streak >= threshold:
        detail += f"; {BREAKER_UNTIL}"
    check = Check(name="circuit_breaker", passed=streak < threshold, detail=detail)
    return [check], None if check.passed else ReasonCode.CIRCUIT_BREAKER_OPEN


def llm_budget(target: TargetConfig, state: CycleState) -> Check | None:
    """The target's daily model budget (``llm_daily_usd``) against its attempts' cost over the last 24 h."""
    if target.executor != "llm" or target.llm_daily_usd is None:
        return None
    now = state.now or datetime.now(UTC)
    spent = sum(a.cost_usd for a in state.attempts if a.finished_at > now - timedelta(hours=24))
    detail = f"${spent:.4f} spent on the model in the last 24 h, budget ${target.llm_daily_usd:.2f}/day"
    frees_at = budget_frees_at(((a.finished_at, a.cost_usd) for a in state.attempts), now=now,
                               budget=target.llm_daily_usd)
    if frees_at is not None:
        detail += f"; {budget_until(frees_at, now)}"
    return Check(name="llm_budget", passed=frees_at is None, detail=detail)


def _llm_budget_rule(target: TargetConfig, state: CycleState) -> _RuleResult:
    budget = llm_budget(target, state)
    if budget is None:
        return [], None
    return [budget], None if budget.passed else ReasonCode.LLM_BUDGET_EXHAUSTED


#: The cycle-level rules, in the order they are reported.
_CYCLE_RULES: tuple[Callable[[TargetConfig, CycleState], _RuleResult], ...] = (
    _autonomy_rule, _forge_rule, _hourly_rule, _breaker_rule, _llm_budget_rule,
)


@dataclass(frozen=True)
class _Waiting:
    """What a task waits for beyond its own fields: a new definition after a human closed its PR (``closed``),
    rejected it (``rejected``) or its held branch failed CI (``ci_failed``), each task id to the definition
    hash it had; or CI on its pushed branch (``held``)."""

    closed: dict[str, str]
    rejected: dict[str, str]
    ci_failed: dict[str, str]
    held: set[str]

    def reasons(self, task: Task, defined: str) -> list[ReasonCode]:
        found = [code for code, hashes in ((ReasonCode.PR_CLOSED_UNCHANGED, self.closed),
                                           (ReasonCode.REJECTED_BY_HUMAN, self.rejected))
                 if hashes.get(task.id) == defined]
        if task.id in self.held:
            found.append(ReasonCode.AWAITING_CI)
        if self.ci_failed.get(task.id) == defined:
            found.append(ReasonCode.CI_FAILED)
        return found


def _task_reasons(
    task: Task,
    *,
    in_scope: Callable[[str], bool],
    statuses: dict[str, str | None],
    budgets: Budgets,
    pr_tasks: set[str],
    waiting: _Waiting,
    protected: Protected,
) -> list[ReasonCode]:
    reasons = []
    if task.ready is not True:
        reasons.append(ReasonCode.NOT_READY)
    if task.status not in PENDING_STATUSES:
        reasons.append(ReasonCode.STATUS_NOT_PENDING)
    if any(dep not in statuses or statuses[dep] not in DONE_STATUSES for dep in task.dependencies):
        reasons.append(ReasonCode.DEPENDENCIES_INCOMPLETE)
    if not task.allowed_paths or not all(in_scope(p) for p in task.allowed_paths):
        reasons.append(ReasonCode.SCOPE_VIOLATION)
    if any(in_scope(p) and protected.hits(p) for p in task.allowed_paths):
        reasons.append(ReasonCode.PROTECTED_PATH)
    defined = task.definition_hash()
    if budgets.failures_spent(task.id, defined):
        reasons.append(ReasonCode.ATTEMPTS_EXHAUSTED)
    if task.id in pr_tasks:
        reasons.append(ReasonCode.PR_OPEN_FOR_TASK)
    reasons += waiting.reasons(task, defined)
    if budgets.rounds_spent(task.id, defined):
        reasons.append(ReasonCode.REVIEW_ROUNDS_EXHAUSTED)
    return reasons


def state_budgets(target: TargetConfig, state: CycleState, backlog: Backlog) -> Budgets:
    """The budgets ``state`` holds. Without ``failures`` (a STATE.json without them) the failed ``attempts`` that
    were no refresh count against each task's definition in ``backlog``."""
    failures = state.failures
    if failures is None:
        failed = Counter(a.task_id for a in state.attempts if a.outcome in FAILED_OUTCOMES and not a.continued_pr)
        tasks = backlog.by_id()
        failures = {task: TaskCount(task_hash=tasks[task].definition_hash(), count=n)
                    for task, n in failed.items() if task in tasks}
    return Budgets(failures=failures, rounds=dict(state.review_rounds), max_failures=target.max_attempts_per_task,
                   max_rounds=target.max_review_rounds)


def _invalid_verdict(entry: InvalidTask) -> TaskVerdict:
    label = entry.id if entry.id else f"#{entry.index}"
    return TaskVerdict(id=label, eligible=False, reasons=[ReasonCode.INVALID_TASK])


def _verdicts(
    target: TargetConfig, backlog: Backlog, state: CycleState, protected: Protected
) -> tuple[list[TaskVerdict], Task | None]:
    """Every task's verdict, in backlog order (invalid entries at their position), and the chosen task:
    the eligible one with the highest priority, the earliest in the file on a tie."""
    in_scope = cache(Scope.of(target.allowed_path_prefixes).contains)  # tasks often share paths
    statuses = {t.id: t.status for t in backlog.tasks}
    for entry in backlog.invalid:
        if entry.id and entry.id not in statuses:
            statuses[entry.id] = None  # exists, but its status cannot be trusted
    budgets = state_budgets(target, state, backlog)
    pr_tasks = {tid for pr in state.open_prs or [] if (tid := _pr_task_id(pr))}
    # The latest closure (rejection) per task wins.
    waiting = _Waiting(closed={c.task_id: c.task_hash for c in state.closed_prs if not c.by_human_gate and not c.by_ci},
                       rejected={c.task_id: c.task_hash for c in state.closed_prs if c.by_human_gate},
                       ci_failed={c.task_id: c.task_hash for c in state.closed_prs if c.by_ci},
                       held={b.task_id for b in state.held_branches})
    red_at_base = frozenset(state.red_at_base)

    verdicts: list[TaskVerdict] = []
    invalid = sorted(backlog.invalid, key=lambda i: i.index)
    next_invalid = 0
    best: tuple[int, int] | None = None
    chosen: Task | None = None
    for position, task in enumerate(backlog.tasks):
        # Interleave invalid entries at their backlog position so the report follows the file.
        while next_invalid < len(invalid) and invalid[next_invalid].index <= position + next_invalid:
            verdicts.append(_invalid_verdict(invalid[next_invalid]))
            next_invalid += 1
        reasons = _task_reasons(task, in_scope=in_scope, statuses=statuses, budgets=budgets, pr_tasks=pr_tasks,
                                waiting=waiting, protected=protected)
        if task.id in red_at_base:
            reasons.append(ReasonCode.CHECKS_RED_AT_BASE)
        verdicts.append(TaskVerdict(id=task.id, eligible=not reasons, reasons=reasons))
        key = (task.priority_rank, position)
        if not reasons and (best is None or key < best):
            best, chosen = key, task
    verdicts.extend(_invalid_verdict(entry) for entry in invalid[next_invalid:])
    return verdicts, chosen


def _selection_check(verdicts: list[TaskVerdict], chosen: Task | None) -> Check:
    total = len(verdicts)
    if chosen is None:
        return Check(name="task_selection", passed=False, detail=f"no eligible task among {total} task(s)")
    eligible = sum(1 for v in verdicts if v.eligible)
    detail = (f"{eligible} eligible of {total} task(s); highest priority: {chosen.id} "
              f"({chosen.priority or 'medium'})")
    return Check(name="task_selection", passed=True, detail=detail)


def target_protected(target: TargetConfig, extra: tuple[str, ...] = ()) -> Protected:
    """What no attempt of ``target`` may change: the backlog, the recipes file, ``protected_paths``, ``extra``."""
    return Protected.of([target.backlog_path, target.recipes_path, *target.protected_paths, *extra])


def decide(
    target: TargetConfig, backlog: Backlog, state: CycleState, *, protected: Protected | None = None
) -> Decision:
    """Run every guardrail and pick at most one task. Linear in tasks + attempts (plus one sort).

    ``protected`` defaults to :func:`target_protected`; the cycle adds the scripts the recipes run.
    """
    checks: list[Check] = []
    failed: list[ReasonCode] = []
    for rule in _CYCLE_RULES:
        found, reason = rule(target, state)
        checks += found
        if reason is not None:
            failed.append(reason)
    verdicts, chosen = _verdicts(target, backlog, state, protected or target_protected(target))
    checks.append(_selection_check(verdicts, chosen))
    if chosen is None and not failed:
        failed.append(ReasonCode.NO_ELIGIBLE_TASK)
    run = not failed and chosen is not None
    return Decision(
        target_id=target.target_id,
        decision="run" if run else "skip",
        task_id=chosen.id if run and chosen else None,
        reasons=failed,
        checks=checks,
        tasks=verdicts,
    )


def sandbox_gate(decision: Decision, problem: str | None, *, label: str = "bwrap") -> Decision:
    """Add the ``sandbox`` check to a run decision; a sandbox that cannot be built (``problem``) stops it."""
    if problem is None:
        return decision.model_copy(update={"checks": [*decision.checks, Check(
            name="sandbox", passed=True, detail=f"recipe steps run in: {label}")]})
    return decision.model_copy(update={
        "decision": "skip", "task_id": None,
        "reasons": [*decision.reasons, ReasonCode.SANDBOX_UNAVAILABLE],
        "checks": [*decision.checks, Check(name="sandbox", passed=False, detail=problem)],
    })
