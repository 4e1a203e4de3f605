"""The evidence a cycle leaves: one versioned, schema-validated record per DAG run.

Records are stored as the ``extra`` of an asset event on the target's evidence asset (so they live in
the Airflow metadata DB, show in the UI's asset view, and the next cycle reads them through the Task
SDK) and as the ``record_evidence`` task's XCom.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from leviathan_lib.core.ci import CiState
from leviathan_lib.core.egress import EgressReport
from leviathan_lib.core.guardrails import AttemptRecord, ReasonCode, TaskCount, count_use, failure_streak
from leviathan_lib.core.limits import CleanupReport, LimitsReport

EVIDENCE_VERSION: Final = 1
#: PR-opening times the ledger keeps: enough for the largest ``max_prs_per_hour``.
RECENT_PRS = 100
#: Attempts the ledger keeps (the breaker's streak and the daily budget's window); beyond it the oldest goes,
#: its cost moved onto the next one (which is newer: the budget over-counts, it never under-counts).
RECENT_ATTEMPTS = 1000
#: The daily model budget's window (``llm_daily_usd``).
BUDGET_WINDOW = timedelta(hours=24)

#: The fixed vocabularies running totals (and the metrics) count by; anything else counts as ``other``.
DECISIONS = ("run", "skip", "error")
REASONS = (*(code.value for code in ReasonCode), "other")
OUTCOMES = ("succeeded", "failed", "timed_out", "rejected_by_guardrail", "rejected_by_human", "checks_red_at_base",
            "other")
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
#: Upper bounds (seconds) of the time-to-merge buckets the scorecard counts by: 10 min, 1 h, 4 h, 12 h, 1 d, 2 d,
#: 3 d, 7 d, 14 d, 30 d, then ``+Inf``.
MERGE_BUCKETS = (600.0, 3600.0, 14400.0, 43200.0, 86400.0, 172800.0, 259200.0, 604800.0, 1209600.0, 2592000.0)

#: ``checks_red_at_base``: the repository's own checks already failed on the pinned commit, so the attempt made no
#: change; neither a success nor a failure (the ledger does not count it, see :meth:`Ledger.with_cycle`).
Outcome = Literal["succeeded", "failed", "timed_out", "rejected_by_guardrail", "rejected_by_human",
                  "checks_red_at_base"]
#: Red-at-base entries the ledger keeps (one per task; the oldest go first).
MAX_RED_AT_BASE = 200


class CheckEvidence(BaseModel):
    name: str
    passed: bool
    detail: str


class TaskVerdictEvidence(BaseModel):
    id: str
    eligible: bool
    reasons: list[str]


class CheckRunEvidence(BaseModel):
    """One run of one of the repository's own checks: on the pinned commit (``base``) or on the change."""

    name: str
    phase: Literal["base", "change"]
    passed: bool
    exit_code: int | None = None
    duration_seconds: float = 0.0
    #: The last 4 KB of its combined output, redacted; untrusted text, shown inert.
    output_tail: str = ""
    output_bytes: int = 0
    timed_out: bool = False
    modified_tree: bool = False
    error: str | None = None
    cached: bool = False

    @property
    def status(self) -> str:
        """In one word: ``pass``, ``FAIL(<exit code>)``, ``timeout``, ``modified`` (changed files) or ``error``."""
        if self.passed:
            return "pass"
        if self.modified_tree:
            return "modified"
        if self.error:
            return "error"
        return "timeout" if self.timed_out else f"FAIL({self.exit_code})"


class AttemptEvidence(BaseModel):
    task_id: str
    attempt: int
    task_hash: str
    branch: str
    backend: str
    image: str | None = None
    #: Where the recipe's (and the checks') steps ran: ``bwrap``, ``pod`` or ``unsandboxed (opt-out)``; None for
    #: the llm executor without checks (no repository code ran).
    sandbox: str | None = None
    outcome: Outcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    changed_paths: list[str] = Field(default_factory=list)
    pr_number: int | None = None
    pr_url: str | None = None
    #: The commit Leviathan pushed to ``branch``: a different branch tip later means someone else pushed.
    pr_head_sha: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The model's usage (llm executor): what it cost, which model, which prompt template (sha256).
    cost_usd: float | None = None
    model: str | None = None
    prompt_sha256: str | None = None
    #: The open PR this attempt delivered to instead of opening one (``continue_pr``), why (``pr_conflicted``,
    #: ``changes_requested``, ...) and where the worker started (``base`` or ``branch``).
    continued_pr: int | None = None
    continue_why: str | None = None
    continue_start: Literal["base", "branch"] | None = None
    #: What went wrong after the push (``pr_body_not_updated: ...``): the PR holds ``pr_head_sha`` regardless.
    delivery_note: str = ""
    #: The connections recipe steps made through the egress proxy (``sandbox_egress``), allowed and refused,
    #: with their bytes (at most ``core.egress.MAX_RECORDED`` listed); None when no proxy ran.
    egress: EgressReport | None = None
    #: The resource limits the recipe's steps ran under, how they held (``mechanism``) and which one a step
    #: exceeded (``exceeded``; the error code is then ``resource_limit``). None: no sandboxed step ran.
    limits: LimitsReport | None = None
    #: The local backend's clean-up: scratch of crashed attempts swept (``swept_dirs``, ``swept_bytes``) and
    #: what could not be removed (``problems``); None when there was nothing to say.
    cleanup: CleanupReport | None = None
    #: The repository's own checks (``required_checks`` and the task's ``checks``): each one's base run and its
    #: last run on the change (docs/worker.md "Checks").
    checks: list[CheckRunEvidence] = Field(default_factory=list)
    #: Checks that already failed on the pinned commit.
    checks_red_at_base: list[str] = Field(default_factory=list)

    def check_statuses(self) -> list[tuple[str, str, str]]:
        """Each check once: its name and :attr:`~CheckRunEvidence.status` on the pinned commit and on the change
        (``-``: not run there)."""
        runs: dict[str, dict[str, str]] = {}
        for run in self.checks:
            runs.setdefault(run.name, {})[run.phase] = run.status
        return [(name, phases.get("base", "-"), phases.get("change", "-")) for name, phases in runs.items()]
    #: ``pr_creation: checks_pass``: ``branch`` was pushed (``pr_head_sha``) and its PR, titled and described
    #: thus, opens once CI on it passes (a later cycle's PR sync, :mod:`leviathan_lib.cycle.held`).
    awaiting_ci: bool = False
    pr_title: str | None = None
    pr_body: str | None = None


class ApprovalEvidence(BaseModel):
    """A human approval gate's decision (``approval: plan | pull_request``): what was asked, who answered, when."""

    gate: Literal["plan", "pull_request"]
    task_id: str
    task_hash: str
    choice: Literal["approved", "rejected"]
    #: ``human``: someone answered; ``timeout``: nobody did within ``approval_timeout_seconds`` (a rejection).
    reason: Literal["human", "timeout"]
    #: The Airflow user id and name of whoever answered (None on a timeout).
    by: str | None = None
    by_name: str | None = None
    at: datetime | None = None
    #: Who was allowed to answer (``approval_assignees``; empty: anyone with access to the DAG's actions).
    assignees: list[str] = Field(default_factory=list)
    #: The answer's optional reason, as the approver typed it (untrusted text, at most 500 characters).
    note: str | None = None


class PrStateChange(BaseModel):
    """A Leviathan PR that a human merged or closed since the last cycle (PR lifecycle sync), or a merged one
    a commit on the target branch reverted (``reverted``, :mod:`leviathan_lib.cycle.reverts`)."""

    number: int
    task_id: str
    branch: str
    state: Literal["merged", "closed", "reverted"]
    task_hash: str | None = None
    branch_deleted: bool = False
    #: Why the ``agent/`` branch was kept: ``human_edited`` (its tip is not the commit Leviathan pushed),
    #: ``pushed_head_unknown`` (no recorded push to compare with) or ``delete_merged_branches_off``.
    branch_kept: str | None = None
    #: ``merged``: the commit the forge merged it as (a merge or squash commit); ``reverted``: that commit,
    #: and the commit that reverses its change.
    merge_sha: str | None = None
    revert_sha: str | None = None
    #: ``merged`` / ``closed``: when the forge says the PR was opened and merged or closed, and the first settled
    #: CI state on the head Leviathan first pushed (None: none reported; absent in older records).
    opened_at: datetime | None = None
    decided_at: datetime | None = None
    ci_first_push: Literal["success", "failure"] | None = None


LifecycleKind = Literal["human_edited", "pr_branch_deleted", "pr_superseded", "pr_refresh_limit",
                        "changes_requested", "retry_command", "rebase_command", "feedback_ignored",
                        "ci_passed", "ci_failed", "ci_pending", "ci_unknown", "ci_fix_limit",
                        "pr_created", "ci_branch_deleted", "reply_posted", "reply_failed"]
#: Lifecycle kinds that are review feedback (:mod:`leviathan_lib.cycle.feedback`).
FEEDBACK_KINDS = frozenset({"changes_requested", "retry_command", "rebase_command", "feedback_ignored"})
#: The requests a human makes on a PR (served by the task's next attempt on it).
REQUEST_KINDS = ("changes_requested", "retry_command", "rebase_command")
#: The lifecycle kind that records a PR head's new CI state (:mod:`leviathan_lib.cycle.ci_sync`); a head with
#: no CI (``none``: the usual state of a head just pushed) is no event.
CI_KINDS: dict[str, LifecycleKind] = {"success": "ci_passed", "failure": "ci_failed", "pending": "ci_pending",
                                      "unknown": "ci_unknown"}


class LifecycleAction(BaseModel):
    """Something Leviathan noticed about, or did to, one of its open PRs this cycle (kinds are reason codes).

    ``human_edited``: the branch tip is not the commit Leviathan pushed; ``pr_branch_deleted``: the branch is
    gone. Either way the PR is never rewritten, closed or deleted by Leviathan again and gets one comment.
    ``pr_superseded``: the task's definition changed; the PR was closed (``closed``) with a comment and the
    task runs again. ``pr_refresh_limit``: the PR conflicts with base ``base_sha`` but its task's refreshes
    reached ``max_pr_refreshes``. (A refresh itself is the cycle's attempt, ``attempt.continued_pr``.)
    ``changes_requested`` / ``retry_command`` / ``rebase_command``: a user with write permission asked for
    another attempt (from the PR's branch; ``rebase_command``: on the current base); ``feedback_ignored``: a
    review or command not acted on (``reason``).
    ``ci_passed`` / ``ci_failed`` / ``ci_pending`` / ``ci_unknown``: the CI state of the PR's head changed
    (``ci_state``, on ``head_sha``); ``ci_fix_limit``: its CI failed but no fix attempt is left (``detail``).
    A branch pushed before its PR (``pr_creation: checks_pass``, ``number`` None) gets the same CI kinds, then
    ``pr_created`` (CI passed, or none reported in ``ci_wait_minutes``: its PR opened, ``number``) or
    ``ci_branch_deleted`` (CI failed, no fix left: deleted; the task waits, ``ci_failed``).
    ``reply_posted`` / ``reply_failed``: Leviathan's one reply comment answering the reviews and commands
    ``reply_keys`` was posted (or found already there), or the forge refused it (``detail``: tried again next
    cycle; :mod:`leviathan_lib.cycle.replies`).
    A request or ``feedback_ignored`` with ``tick`` came from a box ticked on the dashboard issue; one with
    ``number`` None (``dashboard_tick_stale``, ``dashboard_tampered``) is answered on the dashboard only.
    """

    kind: LifecycleKind
    #: None: a branch whose PR is not open yet (``pr_creation: checks_pass``).
    number: int | None
    task_id: str
    branch: str
    head_sha: str | None = None
    base_sha: str | None = None
    commented: bool = False
    closed: bool = False
    detail: str = ""
    #: Feedback: who sent it, the stable reason it was ignored, and which review or comment it was.
    author: str | None = None
    reason: str | None = None
    review_id: int | None = None
    comment_id: int | None = None
    #: Feedback: the newest review and comment ids decided on this PR by this cycle (never decided again).
    seen_review_id: int | None = None
    seen_comment_id: int | None = None
    #: ``changes_requested``: the review text (redacted, at most 8 KB), untrusted data for the executor;
    #: ``ci_failed``: the failing checks' names and summaries, the same way (what a CI fix attempt is told).
    feedback: str | None = None
    #: ``ci_*``: the CI state read on ``head_sha`` (``detail`` names the failing checks, or why it is unknown).
    ci_state: CiState | None = None
    #: ``reply_*``: the events (:attr:`OwedReply.key`) the reply answers.
    reply_keys: list[str] = Field(default_factory=list)
    #: A tick on the dashboard issue (:mod:`leviathan_lib.cycle.ticks`): the target's running tick number; a
    #: request or ``feedback_ignored`` that came from a tick, not from a review or comment.
    tick: int | None = None


#: PRs humans merged or closed that the dashboard lists (the newest ones).
RECENT_SETTLED_PRS = 20
#: Dashboard ticks whose fate the dashboard lists (the newest ones).
RECENT_TICKS = 10


class DashboardAction(BaseModel):
    """What this cycle did to the target's dashboard issue; absent when its content did not change.

    ``dashboard_update_failed`` carries the forge's reason (``error_code``); the cycle decided anyway.
    """

    kind: Literal["dashboard_created", "dashboard_updated", "dashboard_closed", "dashboard_update_failed"]
    number: int | None = None
    #: The content (without the "as of" line) this action wrote or, for ``dashboard_closed``, left unwritten.
    content_hash: str | None = None
    #: sha256 of the whole body written; how an edit by someone else is noticed (the body is never parsed).
    body_sha256: str | None = None
    #: The body or title had been changed by someone else since Leviathan wrote it; it was overwritten.
    overwrote_edit: bool = False
    #: The issue this one replaces (it was deleted or is no issue any more).
    replaced: int | None = None
    error_code: str | None = None
    detail: str = ""


class SettledPR(BaseModel):
    number: int
    task_id: str
    state: Literal["merged", "closed", "reverted"]


class TickNote(BaseModel):
    """What became of one dashboard tick (listed on the dashboard until newer ticks push it out)."""

    tick: int
    verb: str
    #: The PR the box was for (None: the dashboard was edited beyond its boxes, no tick was read).
    number: int | None = None
    #: Who ticked, when the forge says (None on GitHub: only people with write access can edit the issue).
    author: str | None = None
    #: ``queued`` (the PR's next attempt serves it, and answers on the PR) or the reason code it was refused.
    outcome: str


def _tick_note(action: LifecycleAction, tick: int) -> TickNote:
    """A tick's request (``queued``) or refusal; a refusal's ``detail`` starts with the verb (or the request's
    kind, when the request was dropped for a budget)."""
    if action.kind == "feedback_ignored":
        verb = (action.detail.split(" ", 1)[0] or "tick").removesuffix("_command")
        return TickNote(tick=tick, verb=verb, number=action.number, author=action.author,
                        outcome=action.reason or "unknown")
    return TickNote(tick=tick, verb=action.kind.removesuffix("_command"), number=action.number,
                    author=action.author, outcome="queued")


class DashboardState(BaseModel):
    """The dashboard issue Leviathan writes (number, what it last wrote) and the PRs it lists as settled."""

    number: int | None = None
    content_hash: str | None = None
    body_sha256: str | None = None
    #: A human closed it: Leviathan does not write it again until a human reopens it.
    closed: bool = False
    settled_prs: list[SettledPR] = Field(default_factory=list)
    #: Ticks read so far (each tick's number, the key its reply is marked with), and the newest ones' fate.
    ticks_read: int = 0
    ticks: list[TickNote] = Field(default_factory=list)

    def with_cycle(self, record: CycleRecord) -> DashboardState:
        settled = self.settled_prs + [SettledPR(number=c.number, task_id=c.task_id, state=c.state)
                                      for c in record.pr_sync]
        state = self.with_ticks(record.lifecycle)
        return state.model_copy(update={"settled_prs": settled[-RECENT_SETTLED_PRS:]}).after(record.dashboard)

    def with_ticks(self, actions: list[LifecycleAction]) -> DashboardState:
        """After the ticks this cycle read (the requests and refusals that carry a ``tick``)."""
        notes = [_tick_note(a, a.tick) for a in actions if a.tick is not None]
        if not notes:
            return self
        return self.model_copy(update={"ticks_read": max(self.ticks_read, *(n.tick for n in notes)),
                                       "ticks": [*self.ticks, *notes][-RECENT_TICKS:]})

    def after(self, action: DashboardAction | None) -> DashboardState:
        """The issue once ``action`` was done to it (a failed or no write leaves it as it was)."""
        if action is None or action.kind == "dashboard_update_failed":
            return self
        update: dict[str, Any] = {"number": action.number, "content_hash": action.content_hash,
                                  "closed": action.kind == "dashboard_closed"}
        if action.body_sha256 is not None:
            update["body_sha256"] = action.body_sha256
        return self.model_copy(update=update)


class LedgerAttempt(BaseModel):
    task_id: str
    outcome: Literal["succeeded", "failed", "timed_out"]
    finished_at: datetime
    cost_usd: float = 0.0
    #: The attempt delivered to this open PR (``continue_pr``) and why; it is no new attempt at the task.
    continued_pr: int | None = None
    continue_why: str | None = None


class PrCi(BaseModel):
    """CI on a Leviathan PR, as the PR sync last read it (:mod:`leviathan_lib.cycle.ci_sync`).

    ``state`` is the newest reading that said something, on ``head_sha``: a head with no CI reported leaves
    no reading, so a ``head_sha`` other than the PR's head means its current head has no CI yet (``none``).
    """

    #: None: no CI reported on any head yet.
    state: CiState | None = None
    head_sha: str | None = None
    #: The failing checks' report while ``state`` is ``failure`` (untrusted, redacted, at most 8 KB).
    report: str | None = None
    #: The head Leviathan first pushed, and the first settled state (success or failure) CI reported on it:
    #: "CI passed on the first push".
    first_head: str | None = None
    first_push: Literal["success", "failure"] | None = None
    #: Attempts that delivered to this PR to fix its red CI (``max_ci_fix_attempts``).
    fix_attempts: int = 0

    def with_reading(self, action: LifecycleAction) -> PrCi:
        """Fold in one CI reading of the PR's head (a ``ci_*`` lifecycle action)."""
        first = self.first_push
        if first is None and action.head_sha == self.first_head and action.ci_state in ("success", "failure"):
            first = action.ci_state
        return self.model_copy(update={"state": action.ci_state, "head_sha": action.head_sha, "first_push": first,
                                       "report": action.feedback if action.ci_state == "failure" else None})

    def on(self, head: str | None, *, human_edited: bool = False) -> CiState:
        """The CI state of the PR's current head: Leviathan's ``head`` (the newest reading is of a human's head
        once ``human_edited``); ``none`` when nothing was reported on it."""
        if self.state is None or (not human_edited and self.head_sha != head):
            return "none"
        return self.state


#: Replies a ledger PR owes at most (the oldest go first, logged); tries per reply before it is given up.
MAX_OWED_REPLIES = 100
MAX_REPLY_TRIES = 5
#: Changed paths a served reply names at most.
MAX_REPLY_PATHS = 20


class OwedReply(BaseModel):
    """A reply Leviathan owes on a PR to one review or command it read (docs/pull-requests.md "Replies").

    ``served``: an attempt pushed ``head_sha`` (changing ``paths``) for it; ``failed``: that attempt pushed
    nothing; ``refused``: not acted on, for ``reason`` (a reason code, e.g. ``command_not_permitted`` or
    ``feedback_attempts_exhausted``). Never holds the review's or comment's own text.
    """

    #: ``r<review id>``, ``c<comment id>`` or ``t<dashboard tick>``: the event, and the marker that makes the
    #: reply idempotent.
    key: str
    kind: Literal["served", "failed", "refused"]
    author: str
    reason: str | None = None
    why: str | None = None
    head_sha: str | None = None
    paths: list[str] = Field(default_factory=list)
    comment_id: int | None = None
    #: Cycles the forge refused the reply in (given up at :data:`MAX_REPLY_TRIES`).
    tries: int = 0


def reply_key(review_id: int | None, comment_id: int | None, tick: int | None = None) -> str | None:
    """The event key of a review, comment or dashboard tick (None: none of them, nothing to answer)."""
    if review_id is not None:
        return f"r{review_id}"
    if comment_id is not None:
        return f"c{comment_id}"
    return f"t{tick}" if tick is not None else None


def with_replies(owed: list[OwedReply], actions: list[LifecycleAction]) -> list[OwedReply]:
    """``owed`` after one PR's lifecycle actions: refusals owe a reply, posted replies are settled, refused
    posts count a try."""
    out = list(owed)
    for action in actions:
        keys = set(action.reply_keys)
        key = reply_key(action.review_id, action.comment_id, action.tick)
        if action.kind == "feedback_ignored" and key is not None and action.author is not None \
                and all(o.key != key for o in out):
            out.append(OwedReply(key=key, kind="refused", author=action.author, reason=action.reason,
                                 comment_id=action.comment_id))
        elif action.kind == "reply_posted":
            out = [o for o in out if o.key not in keys]
        elif action.kind == "reply_failed":
            out = [o.model_copy(update={"tries": o.tries + 1}) if o.key in keys else o for o in out]
            out = [o for o in out if o.tries < MAX_REPLY_TRIES]
    return out[-MAX_OWED_REPLIES:]


class LedgerPR(BaseModel):
    number: int
    task_id: str
    branch: str
    task_hash: str
    #: The commit Leviathan pushed (None in records from before it was recorded).
    head_sha: str | None = None
    #: Someone else pushed to (or deleted) the branch and Leviathan has commented once about it (never again).
    human_edited: bool = False
    #: The base commit the pushed head was built on (None in records from before it was recorded).
    base_sha: str | None = None
    #: Base commits this PR's conflict was handled at (a refresh, or the refresh limit), newest last: at most
    #: one refresh per base commit.
    conflict_bases: list[str] = Field(default_factory=list)
    #: The newest review and comment ids already decided (each is acted on at most once).
    seen_review_id: int = 0
    seen_comment_id: int = 0
    #: A permitted request not yet served by an attempt (``changes_requested`` or ``retry_command``).
    pending: LifecycleAction | None = None
    ci: PrCi = Field(default_factory=PrCi)
    #: Replies owed to reviews and commands read on this PR, not posted yet (:mod:`leviathan_lib.cycle.replies`).
    replies: list[OwedReply] = Field(default_factory=list)

    def with_feedback(self, action: LifecycleAction) -> LedgerPR:
        """Fold one feedback action of this PR in: advance what was seen, keep or drop the request."""
        update: dict[str, Any] = {
            "seen_review_id": max(self.seen_review_id, action.seen_review_id or 0),
            "seen_comment_id": max(self.seen_comment_id, action.seen_comment_id or 0),
        }
        if action.kind in REQUEST_KINDS:
            update["pending"] = action
        elif action.reason in ("feedback_human_edited", "feedback_attempts_exhausted", "review_rounds_exhausted"):
            update["pending"] = None
        return self.model_copy(update=update)


class LedgerHeld(BaseModel):
    """A branch Leviathan pushed whose PR opens once CI on it passes (``pr_creation: checks_pass``)."""

    task_id: str
    branch: str
    task_hash: str
    #: The commit Leviathan pushed (the lease), the base it was built on, and when (``ci_wait_minutes``).
    head_sha: str
    base_sha: str | None = None
    pushed_at: datetime
    #: The PR to open: title and body as delivery built and checked them.
    title: str
    body: str
    ci: PrCi = Field(default_factory=PrCi)


class LedgerMerged(BaseModel):
    """A merged Leviathan PR whose revert is looked for on the target branch (:mod:`leviathan_lib.cycle.reverts`)."""

    number: int
    task_id: str
    branch: str
    merge_sha: str


#: Merged PRs the ledger watches for a revert (the newest); older ones are no longer looked at.
RECENT_MERGED = 20


class LedgerClosed(BaseModel):
    task_id: str
    task_hash: str


class LedgerRejected(LedgerClosed):
    """A task a human rejected at its approval gate (or nobody answered in time): who, when, why."""

    by: str | None = None
    at: datetime | None = None
    note: str | None = None


def _vocabulary(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else "other"


class TargetSwitch(BaseModel):
    """A target's switch as an admin last set it through Leviathan."""

    enabled: bool
    changed_at: datetime
    by: str
    reason: str = ""


class Ledger(BaseModel):
    """What the guardrails need from all earlier history, carried forward in every cycle record.

    The next cycle reads only the newest records instead of the whole history, so its cost does not grow
    with the age of the target; retention can prune old records without changing any decision. Every
    field is bounded: counts per task, the attempts the breaker and the daily budget still look at, the
    PRs still open, the latest closure per task.
    """

    #: Attempts per task over the whole history (attempt numbers).
    attempt_counts: dict[str, int] = Field(default_factory=dict)
    #: Of those, the refreshes of a conflicted PR (``max_pr_refreshes``).
    refresh_counts: dict[str, int] = Field(default_factory=dict)
    #: Per task, its newest definition (hash) and that definition's failed attempts (failed, timed out, refused
    #: by a guardrail; refreshes excepted): ``max_attempts_per_task``. A new definition starts afresh. Absent
    #: from ledgers written before it: they start at zero (the breaker still counts every failure).
    failures: dict[str, TaskCount] = Field(default_factory=dict)
    #: The same per task definition for human rounds: served review feedback and ``/leviathan retry``, approval
    #: gate rejections (``max_review_rounds``).
    review_rounds: dict[str, TaskCount] = Field(default_factory=dict)
    #: Oldest first: the newest succeeded attempt and every later one (the breaker's failure streak), and
    #: every attempt within :data:`BUDGET_WINDOW` of the newest (the daily model budget); at most
    #: :data:`RECENT_ATTEMPTS`.
    recent_attempts: list[LedgerAttempt] = Field(default_factory=list)
    open_prs: list[LedgerPR] = Field(default_factory=list)
    #: The latest closure without merge per task (only the latest counts), in closing order.
    closed_prs: list[LedgerClosed] = Field(default_factory=list)
    #: Attempts a human rejected at an approval gate: like a closed PR, the task waits for a new definition.
    rejected: list[LedgerRejected] = Field(default_factory=list)
    breaker_reset_at: datetime | None = None
    #: The newest change of this target's switch made through Leviathan (an admin's pause stands until an
    #: admin resumes; an unpause outside Leviathan does not lift it).
    switch: TargetSwitch | None = None
    #: When the newest PRs were opened (at most :data:`RECENT_PRS`, oldest first), for ``max_prs_per_hour``.
    prs_opened_at: list[datetime] = Field(default_factory=list)
    dashboard: DashboardState = Field(default_factory=DashboardState)
    #: Task id → the pinned commit its last attempt found the repository's checks failing on
    #: (``checks_red_at_base``): the task waits while the branch stays at that commit.
    red_at_base: dict[str, str] = Field(default_factory=dict)
    #: Branches pushed whose PR waits for green CI (``pr_creation: checks_pass``); they count as open PRs.
    held_branches: list[LedgerHeld] = Field(default_factory=list)
    #: The latest task per id whose held branch failed CI with no fix left (deleted): like a closed PR, the
    #: task waits for a new definition (``ci_failed``).
    ci_failed: list[LedgerClosed] = Field(default_factory=list)
    #: Merged PRs not seen reverted (the newest :data:`RECENT_MERGED`), and the target-branch commit up to
    #: which reverts were looked for (the next cycle looks only at commits after it).
    merged_prs: list[LedgerMerged] = Field(default_factory=list)
    revert_scan_sha: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_attempt_list(cls, data: Any) -> Any:
        """Records from before the bounded ledger carry every attempt ever (``attempts``): fold them."""
        if not isinstance(data, dict) or "attempts" not in data:
            return data
        data = dict(data)
        attempts = TypeAdapter(list[LedgerAttempt]).validate_python(data.pop("attempts"))
        folded = Ledger.model_validate(data)
        for attempt in attempts:
            folded = folded.with_attempt(attempt)
        return folded.model_dump()

    def with_switch(self, record: AutonomyChangedRecord) -> Ledger:
        """Fold one target switch change made through Leviathan (the newest wins; outside changes never)."""
        if record.outside or record.target_id is None or (self.switch and self.switch.changed_at >= record.changed_at):
            return self
        switch = TargetSwitch(enabled=record.enabled, changed_at=record.changed_at, by=record.by, reason=record.reason)
        return self.model_copy(update={"switch": switch})

    def with_reset(self, reset_at: datetime | None) -> Ledger:
        if reset_at is None or (self.breaker_reset_at and self.breaker_reset_at >= reset_at):
            return self
        return self.model_copy(update={"breaker_reset_at": reset_at})

    def with_attempt(self, attempt: LedgerAttempt) -> Ledger:
        """Count one finished attempt and keep only the attempts the breaker and the budget still need."""
        counts = {**self.attempt_counts, attempt.task_id: self.attempt_counts.get(attempt.task_id, 0) + 1}
        refreshes = self.refresh_counts
        if attempt.continue_why == "pr_conflicted":
            refreshes = {**refreshes, attempt.task_id: refreshes.get(attempt.task_id, 0) + 1}
        recent = [*self.recent_attempts, attempt]
        last_success = max((i for i, a in enumerate(recent) if a.outcome == "succeeded"), default=0)
        window_start = max(a.finished_at for a in recent) - BUDGET_WINDOW
        recent = [a for i, a in enumerate(recent) if i >= last_success or a.finished_at >= window_start]
        while len(recent) > RECENT_ATTEMPTS:
            dropped, after = recent[0], recent[1]
            recent = [after.model_copy(update={"cost_usd": after.cost_usd + dropped.cost_usd}), *recent[2:]]
        return self.model_copy(update={"attempt_counts": counts, "refresh_counts": refreshes,
                                       "recent_attempts": recent})

    def with_reverts(self, changes: list[PrStateChange], at: datetime) -> Ledger:
        """Count each ``reverted`` PR as a failure for the breaker at ``at`` (a failed entry in the breaker's
        streak, which is no attempt at the task: ``attempt_counts`` stay) and stop watching it."""
        ledger = self
        for change in changes:
            if change.state != "reverted":
                continue
            ledger = ledger.with_attempt(LedgerAttempt(task_id=change.task_id, outcome="failed", finished_at=at,
                                                       continue_why=REVERTED))
            ledger = ledger.model_copy(update={
                "attempt_counts": self.attempt_counts, "refresh_counts": self.refresh_counts,
                "merged_prs": [m for m in ledger.merged_prs if m.number != change.number]})
        return ledger

    def failure_streak(self) -> int:
        """The breaker's measure over this ledger: failed attempts (and reverts) in a row since the reset."""
        return failure_streak([AttemptRecord(task_id=a.task_id, outcome=a.outcome, finished_at=a.finished_at)
                               for a in self.recent_attempts], self.breaker_reset_at)

    def with_cycle(self, record: CycleRecord) -> Ledger:
        """Fold one cycle in: the PRs it saw merged or closed, its lifecycle actions, then its own attempt and PR."""
        gone = {c.number for c in record.pr_sync} | {a.number for a in record.lifecycle
                                                     if a.kind == "pr_superseded" and a.closed}
        open_prs = [_after_actions(p, record.lifecycle) for p in self.open_prs if p.number not in gone]
        closed = list(self.closed_prs)
        for change in record.pr_sync:
            if change.state == "closed" and change.task_hash:
                closed = [c for c in closed if c.task_id != change.task_id]
                closed.append(LedgerClosed(task_id=change.task_id, task_hash=change.task_hash))
        rejected = list(self.rejected)
        if record.approval is not None and record.approval.choice == "rejected":  # the latest per task counts
            rejected = [c for c in rejected if c.task_id != record.approval.task_id]
            gate = record.approval
            rejected.append(LedgerRejected(task_id=gate.task_id, task_hash=gate.task_hash,
                                           by=gate.by_name or gate.by, at=gate.at, note=gate.note))
        ledger = self.model_copy(update={"open_prs": open_prs, "closed_prs": closed, "rejected": rejected})
        ledger = ledger._with_budgets(record)
        opened = list(self.prs_opened_at)
        attempt = record.attempt
        red = self.red_at_base
        if attempt is not None and attempt.outcome is not None:  # a task's newest attempt says where it stands
            red = {task: sha for task, sha in red.items() if task != attempt.task_id}
        if attempt is not None and attempt.outcome == "checks_red_at_base":
            # The repository's state, not an attempt: no count, breaker or budget; the task waits for a new commit.
            red = dict([*red.items(), (attempt.task_id, record.commit_sha or "")][-MAX_RED_AT_BASE:])
        elif attempt is not None and attempt.outcome is not None:
            # A human rejection is no failure of the worker: it neither opens the breaker nor resets it.
            outcome = {"rejected_by_guardrail": "failed", "rejected_by_human": "succeeded"}.get(
                attempt.outcome, attempt.outcome)
            ledger = ledger.with_attempt(LedgerAttempt(
                task_id=attempt.task_id, outcome=outcome, finished_at=attempt.finished_at or record.recorded_at,
                cost_usd=attempt.cost_usd or 0.0, continued_pr=attempt.continued_pr,
                continue_why=attempt.continue_why))
            if attempt.continued_pr is not None:
                open_prs = [_after_continue(p, attempt, record.commit_sha) for p in open_prs]
            elif attempt.pr_number is not None:
                open_prs.append(LedgerPR(number=attempt.pr_number, task_id=attempt.task_id,
                                         branch=attempt.branch, task_hash=attempt.task_hash,
                                         head_sha=attempt.pr_head_sha, base_sha=record.commit_sha,
                                         ci=PrCi(first_head=attempt.pr_head_sha)))
                opened.append(attempt.finished_at or record.recorded_at)
        held, from_held, opened_now, ci_failed = self._held_after(record)
        merged = [*self.merged_prs, *(LedgerMerged(number=c.number, task_id=c.task_id, branch=c.branch,
                                                   merge_sha=c.merge_sha)
                                      for c in record.pr_sync if c.state == "merged" and c.merge_sha)]
        ledger = ledger.model_copy(update={"merged_prs": merged[-RECENT_MERGED:]}).with_reverts(
            record.pr_sync, record.recorded_at)
        if record.reverts_scanned_to:
            ledger = ledger.model_copy(update={"revert_scan_sha": record.reverts_scanned_to})
        return ledger.model_copy(update={"open_prs": open_prs + from_held,
                                         "prs_opened_at": [*opened, *opened_now][-RECENT_PRS:],
                                         "dashboard": self.dashboard.with_cycle(record), "held_branches": held,
                                         "ci_failed": ci_failed, "red_at_base": red})

    def _with_budgets(self, record: CycleRecord) -> Ledger:
        """Count this cycle's failed attempt and its human round (a served request, or a gate rejection: one
        round even when the rejected attempt served a request) against the task definition they were for."""
        attempt, approval = record.attempt, record.approval
        update: dict[str, Any] = {}
        if attempt is not None and attempt.outcome in FAILURE_OUTCOMES and attempt.continue_why != "pr_conflicted":
            update["failures"] = count_use(self.failures, attempt.task_id, attempt.task_hash)
        if approval is not None and approval.choice == "rejected":
            update["review_rounds"] = count_use(self.review_rounds, approval.task_id, approval.task_hash)
        elif attempt is not None and attempt.outcome not in (None, "checks_red_at_base") \
                and attempt.continue_why in REVIEW_ROUND_WHYS:  # red at base serves nothing: the request stays
            update["review_rounds"] = count_use(self.review_rounds, attempt.task_id, attempt.task_hash)
        return self.model_copy(update=update) if update else self

    def _held_after(self, record: CycleRecord) -> tuple[list[LedgerHeld], list[LedgerPR], list[datetime],
                                                          list[LedgerClosed]]:
        """The held branches after this cycle's PR sync and attempt; the PRs opened from them, when, and the
        tasks whose held branch was deleted for red CI (``ci_failed``)."""
        held = {h.branch: h for h in self.held_branches}
        opened: list[LedgerPR] = []
        failed = list(self.ci_failed)
        for action in record.lifecycle:
            h = held.get(action.branch)
            if h is None or (action.number is not None and action.kind != "pr_created"):
                continue
            if action.ci_state is not None:
                held[h.branch] = h.model_copy(update={"ci": h.ci.with_reading(action)})
            elif action.kind == "pr_created" and action.number is not None:
                del held[h.branch]
                opened.append(LedgerPR(number=action.number, task_id=h.task_id, branch=h.branch,
                                       task_hash=h.task_hash, head_sha=h.head_sha, base_sha=h.base_sha, ci=h.ci))
            elif action.kind in ("ci_branch_deleted", "human_edited", "pr_branch_deleted"):
                del held[h.branch]
                if action.kind == "ci_branch_deleted":
                    failed = [c for c in failed if c.task_id != h.task_id]
                    failed.append(LedgerClosed(task_id=h.task_id, task_hash=h.task_hash))
        attempt = record.attempt
        if attempt is not None and attempt.continued_pr is None:
            before = held.get(attempt.branch)
            if before is not None and attempt.continue_why == CI_FIX_WHY:  # spent whether or not it pushed
                before = held[attempt.branch] = before.model_copy(update={"ci": before.ci.model_copy(
                    update={"fix_attempts": before.ci.fix_attempts + 1})})
            if attempt.awaiting_ci and attempt.pr_head_sha:
                pushed = LedgerHeld(task_id=attempt.task_id, branch=attempt.branch, task_hash=attempt.task_hash,
                                    head_sha=attempt.pr_head_sha, base_sha=record.commit_sha,
                                    pushed_at=attempt.finished_at or record.recorded_at, title=attempt.pr_title or "",
                                    body=attempt.pr_body or "", ci=PrCi(first_head=attempt.pr_head_sha))
                if before is not None:  # a fix pushed on top: the same PR-to-be, its CI read afresh
                    pushed = pushed.model_copy(update={"base_sha": before.base_sha, "ci": before.ci})
                held[attempt.branch] = pushed
        return list(held.values()), opened, [record.recorded_at] * len(opened), failed


class Totals(BaseModel):
    """Running totals over every cycle record since ``since``, carried forward in each record.

    Spider's counters read them from the newest record instead of counting the whole history, so a
    scrape costs the same at any age and retention pruning old records changes no counter. Keys are
    the fixed vocabularies above (anything else is ``other``), so the totals stay bounded.
    """

    #: When the oldest record counted was recorded (None: no record yet): the counters count from here
    #: (retention may have pruned older records before the totals were first computed).
    since: datetime | None = None
    cycles: dict[str, int] = Field(default_factory=dict)
    #: Reason codes of cycles that did not run (one per reason).
    skips: dict[str, int] = Field(default_factory=dict)
    attempts: dict[str, int] = Field(default_factory=dict)
    prs_opened: int = 0
    #: Attempt durations per bucket of :data:`DURATION_BUCKETS` (not cumulative), the last one ``+Inf``.
    duration_counts: list[int] = Field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    #: Merged PRs a later commit on the target branch reverted (:mod:`leviathan_lib.cycle.reverts`).
    prs_reverted: int = 0
    #: The scorecard's counters (:mod:`leviathan_lib.evidence.scorecard`) count from here: the first record
    #: counted by a version that kept them (None: none yet; older totals read them as zero).
    scorecard_since: datetime | None = None
    #: PRs humans merged, and closed without merging (the PR sync).
    prs_merged: int = 0
    prs_closed: int = 0
    #: Merged PRs by time from opened to merged, per bucket of :data:`MERGE_BUCKETS` (not cumulative), the last
    #: one ``+Inf``; PRs whose times are unknown are not in them.
    merge_counts: list[int] = Field(default_factory=lambda: [0] * (len(MERGE_BUCKETS) + 1))
    merge_seconds_sum: float = 0.0
    #: Attempts whose change the repository's own checks ran on, and of those the ones where every check passed.
    checks_ran: int = 0
    checks_passed: int = 0
    #: Merged or closed PRs by the first settled CI state on their first push: ``passed`` or ``failed``.
    ci_first_push: dict[str, int] = Field(default_factory=dict)
    #: The model cost of every attempt (``cost_usd``).
    cost_usd: float = 0.0

    @field_validator("merge_counts")
    @classmethod
    def _one_count_per_merge_bucket(cls, counts: list[int]) -> list[int]:
        if len(counts) != len(MERGE_BUCKETS) + 1:
            raise ValueError(f"expected {len(MERGE_BUCKETS) + 1} counts (MERGE_BUCKETS and +Inf), got {len(counts)}")
        return counts

    def with_cycle(self, record: CycleRecord) -> Totals:
        def add(counts: dict[str, int], key: str) -> dict[str, int]:
            return {**counts, key: counts.get(key, 0) + 1}

        update: dict[str, Any] = {"cycles": add(self.cycles, _vocabulary(record.decision, DECISIONS)),
                                  # The first record counted names the start (totals that counted without one
                                  # keep an unknown start).
                                  "since": self.since or (None if self.cycles else record.recorded_at)}
        if record.decision != "run":
            skips = self.skips
            for reason in record.reasons:
                skips = add(skips, _vocabulary(reason, REASONS))
            update["skips"] = skips
        attempt = record.attempt
        # PRs opened: by this cycle's attempt (not one that delivered to its open PR), or held until CI passed.
        update["prs_opened"] = self.prs_opened + sum(a.kind == "pr_created" for a in record.lifecycle) + (
            attempt is not None and attempt.pr_number is not None and attempt.continued_pr is None)
        update["prs_reverted"] = self.prs_reverted + sum(c.state == "reverted" for c in record.pr_sync)
        if attempt is not None:
            update["attempts"] = add(self.attempts, _vocabulary(attempt.outcome, OUTCOMES))
            if attempt.started_at and attempt.finished_at:
                seconds = max(0.0, (attempt.finished_at - attempt.started_at).total_seconds())
                counts = list(self.duration_counts)
                counts[_bucket(seconds, DURATION_BUCKETS)] += 1
                update.update(duration_counts=counts, duration_sum=self.duration_sum + seconds)
        return self.model_copy(update={**update, **self._scorecard_update(record)})

    def _scorecard_update(self, record: CycleRecord) -> dict[str, Any]:
        """The scorecard's counters after ``record``: its settled PRs, its attempt's checks and cost."""
        decided = [c for c in record.pr_sync if c.state in ("merged", "closed")]
        merge_counts, merge_sum = list(self.merge_counts), self.merge_seconds_sum
        first_push = dict(self.ci_first_push)
        for change in decided:
            if change.ci_first_push is not None:
                key = "passed" if change.ci_first_push == "success" else "failed"
                first_push[key] = first_push.get(key, 0) + 1
            if change.state == "merged" and change.opened_at and change.decided_at:
                seconds = max(0.0, (change.decided_at - change.opened_at).total_seconds())
                merge_counts[_bucket(seconds, MERGE_BUCKETS)] += 1
                merge_sum += seconds
        attempt = record.attempt
        change_checks = [c for c in attempt.checks if c.phase == "change"] if attempt else []
        return {"scorecard_since": self.scorecard_since or record.recorded_at,
                "prs_merged": self.prs_merged + sum(c.state == "merged" for c in decided),
                "prs_closed": self.prs_closed + sum(c.state == "closed" for c in decided),
                "merge_counts": merge_counts, "merge_seconds_sum": merge_sum, "ci_first_push": first_push,
                "checks_ran": self.checks_ran + bool(change_checks),
                "checks_passed": self.checks_passed + bool(change_checks and all(c.passed for c in change_checks)),
                "cost_usd": self.cost_usd + ((attempt.cost_usd or 0.0) if attempt else 0.0)}


def _bucket(value: float, bounds: tuple[float, ...]) -> int:
    """The index of the first bucket whose upper bound holds ``value`` (``len(bounds)``: the ``+Inf`` one)."""
    return next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))


#: Why an attempt continues a PR whose CI failed (``max_ci_fix_attempts``).
CI_FIX_WHY = "ci_failed"
#: Why an attempt continues a PR because a human asked (``max_review_rounds``): each is one review round.
REVIEW_ROUND_WHYS = frozenset({"changes_requested", "retry_command", "rebase_command"})
#: Attempt outcomes that count toward ``max_attempts_per_task`` (unless the attempt was a refresh).
FAILURE_OUTCOMES = frozenset({"failed", "timed_out", "rejected_by_guardrail"})
#: The ``continue_why`` of the failed breaker entry a reverted PR leaves (it is no attempt).
REVERTED = "reverted"
#: Base commits a ledger PR remembers (each is one base move; refreshes themselves are bounded lower).
MAX_CONFLICT_BASES = 20


def _after_actions(pr: LedgerPR, actions: list[LifecycleAction]) -> LedgerPR:
    """A still open PR after this cycle's lifecycle actions on it (a comment made, a refresh limit noted)."""
    update: dict[str, Any] = {}
    for action in actions:
        if action.number != pr.number:
            continue
        if action.kind in ("human_edited", "pr_branch_deleted") and action.commented:
            update["human_edited"] = True
        if action.kind == "pr_refresh_limit" and action.base_sha:
            update["conflict_bases"] = [*pr.conflict_bases, action.base_sha][-MAX_CONFLICT_BASES:]
        if action.ci_state is not None:
            update["ci"] = update.get("ci", pr.ci).with_reading(action)
    pr = pr.model_copy(update=update) if update else pr
    for action in actions:
        if action.number == pr.number and action.kind in FEEDBACK_KINDS:
            pr = pr.with_feedback(action)
    mine = [a for a in actions if a.number == pr.number]
    return pr.model_copy(update={"replies": with_replies(pr.replies, mine)}) if mine else pr


def _after_continue(pr: LedgerPR, attempt: AttemptEvidence, base_sha: str | None) -> LedgerPR:
    """The PR an attempt continued: its new head once pushed; a refresh's base is spent either way."""
    if pr.number != attempt.continued_pr:
        return pr
    update: dict[str, Any] = {}
    if attempt.pr_number is not None and attempt.pr_head_sha:
        update["head_sha"] = attempt.pr_head_sha
        if attempt.continue_start == "base":
            update["base_sha"] = base_sha
    if attempt.continue_why == "pr_conflicted" and base_sha:
        update["conflict_bases"] = [*pr.conflict_bases, base_sha][-MAX_CONFLICT_BASES:]
    if attempt.continue_why in REQUEST_KINDS:  # the request is served
        update["pending"] = None
        update["replies"] = _served_reply(pr, attempt)
    if attempt.continue_why == CI_FIX_WHY:  # spent whether or not it pushed
        update["ci"] = pr.ci.model_copy(update={"fix_attempts": pr.ci.fix_attempts + 1})
    return pr.model_copy(update=update)


def _served_reply(pr: LedgerPR, attempt: AttemptEvidence) -> list[OwedReply]:
    """The PR's owed replies plus the one for the request ``attempt`` served (pushed or not)."""
    request = pr.pending
    key = reply_key(request.review_id, request.comment_id, request.tick) if request is not None else None
    if request is None or key is None or request.author is None or any(o.key == key for o in pr.replies):
        return pr.replies
    pushed = attempt.pr_number is not None and bool(attempt.pr_head_sha)
    reply = OwedReply(key=key, kind="served" if pushed else "failed", author=request.author, why=request.kind,
                      head_sha=attempt.pr_head_sha if pushed else None, comment_id=request.comment_id,
                      reason=None if pushed else attempt.error_code,
                      paths=attempt.changed_paths[:MAX_REPLY_PATHS] if pushed else [])
    return [*pr.replies, reply][-MAX_OWED_REPLIES:]


#: Task verdicts one cycle record lists (the reason counts cover every task): a 20,000-task backlog must not
#: make every cycle's record 1 MiB.
MAX_TASK_VERDICTS = 200


class CycleRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["cycle"] = "cycle"
    target_id: str
    dag_run_id: str
    run_type: str | None = None
    recorded_at: datetime
    repo_url: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    decision: Literal["run", "skip", "error"]
    reasons: list[str] = Field(default_factory=list)
    checks: list[CheckEvidence] = Field(default_factory=list)
    #: Every task's verdict, in backlog order: the first :data:`MAX_TASK_VERDICTS` of them.
    tasks: list[TaskVerdictEvidence] = Field(default_factory=list)
    #: How many tasks the decision judged, and how many of them had each reason (all of them, not only
    #: those listed in ``tasks``); None on records from before these were kept.
    tasks_total: int | None = None
    task_reasons: dict[str, int] = Field(default_factory=dict)
    selected_task: str | None = None
    attempt: AttemptEvidence | None = None
    #: Stable code for why the cycle stopped: ``pr_opened``, ``pr_refreshed`` / ``pr_updated`` (an attempt
    #: delivered to its open PR), a guardrail reason code, or an error code.
    stopped_reason: str
    stopped_detail: str = ""
    #: Backfill runs replay the guardrails on the backlog as it was at their logical date; nothing runs.
    replay: bool = False
    #: This cycle's failed attempt was the one that opened the circuit breaker.
    breaker_opened: bool = False
    logical_date: datetime | None = None
    pr_sync: list[PrStateChange] = Field(default_factory=list)
    lifecycle: list[LifecycleAction] = Field(default_factory=list)
    #: The approval gate's decision, when the target has one and the cycle reached it.
    approval: ApprovalEvidence | None = None
    dashboard: DashboardAction | None = None
    #: History as of the end of this cycle (None when the cycle stopped before its guardrails).
    ledger: Ledger | None = None
    #: Running totals including this record (None: unknown, e.g. the cycle failed before reading history).
    totals: Totals | None = None
    #: The target-branch commit up to which this cycle looked for reverts of merged PRs (None: it did not).
    reverts_scanned_to: str | None = None


class BreakerResetRecord(BaseModel):
    """An operator closed the circuit breaker (``leviathan breaker reset``): who, when and why."""

    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["breaker_reset"] = "breaker_reset"
    target_id: str
    reset_at: datetime
    by: str
    reason: str


class FleetBreakerResetRecord(BaseModel):
    """An admin closed the fleet breaker (``leviathan breaker reset --fleet``, Spider): who, when and why. It is
    an event on the fleet breaker asset, which every cycle reads; attempts before it no longer count."""

    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["fleet_breaker_reset"] = "fleet_breaker_reset"
    reset_at: datetime
    by: str
    reason: str


class AutonomyChangedRecord(BaseModel):
    """The global (``target_id`` None) or a target's autonomy switch was changed, by whom and why.

    ``how`` says through what: ``leviathan`` (Spider's admin action or ``leviathan stop|resume``: the only
    changes that count), or Airflow's own action (``airflow:patch_dag``, ``airflow:delete_variable``, ...)
    that Spider found in Airflow's audit log (``outside``: evidence only, never a switch; ``log_id`` is
    that log row, so each is recorded once).
    """

    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["autonomy_changed"] = "autonomy_changed"
    target_id: str | None = None
    enabled: bool
    changed_at: datetime
    by: str
    reason: str = ""
    how: str = "leviathan"
    outside: bool = False
    log_id: int | None = None


class UnreadableRecord(BaseModel):
    run_id: str | None
    problem: str


class History(BaseModel):
    """What earlier cycles and operators left on a target's evidence asset, oldest first."""

    cycles: list[CycleRecord] = Field(default_factory=list)
    resets: list[BreakerResetRecord] = Field(default_factory=list)
    #: This target's switch changes (Spider's admin pause and resume, and changes found outside it).
    switches: list[AutonomyChangedRecord] = Field(default_factory=list)
    unreadable: list[UnreadableRecord] = Field(default_factory=list)

    @property
    def breaker_reset_at(self) -> datetime | None:
        return max((r.reset_at for r in self.resets), default=None)

    def ledger(self, *, exclude_run_id: str | None = None, until: datetime | None = None) -> Ledger:
        """Fold the whole history (oldest first), without this run's own record, optionally up to a time."""
        ledger = Ledger()
        for record in self.cycles:
            if record.dag_run_id == exclude_run_id or record.replay:
                continue
            if until is not None and record.recorded_at > until:
                break
            ledger = ledger.with_cycle(record)
        for reset in self.resets:
            if until is None or reset.reset_at <= until:
                ledger = ledger.with_reset(reset.reset_at)
        for switch in self.switches:
            if until is None or switch.changed_at <= until:
                ledger = ledger.with_switch(switch)
        return ledger

    def latest_ledger(self, *, exclude_run_id: str | None) -> Ledger | None:
        """The newest carried-forward ledger (plus later resets), or None when the window holds none."""
        for index in range(len(self.cycles) - 1, -1, -1):
            record = self.cycles[index]
            if record.dag_run_id == exclude_run_id or record.replay or record.ledger is None:
                continue
            ledger = record.ledger
            for reset in self.resets:
                ledger = ledger.with_reset(reset.reset_at)
            for switch in self.switches:
                ledger = ledger.with_switch(switch)
            return ledger
        return None

    def totals(self, *, exclude_run_id: str | None = None, complete: bool = False) -> Totals | None:
        """The running totals after every record here: the newest carried totals plus the records after
        it; without any, a count of every record when this history is ``complete``, else None (unknown)."""
        records = [r for r in self.cycles if r.dag_run_id != exclude_run_id]
        start = next((i for i in range(len(records) - 1, -1, -1) if records[i].totals is not None), None)
        if start is not None:
            totals = records[start].totals
            assert totals is not None  # found above
            later = records[start + 1:]
        elif complete:
            totals, later = Totals(since=records[0].recorded_at if records else None), records
        else:
            return None
        for record in later:
            totals = totals.with_cycle(record)
        return totals


def parse_records(extras: list[tuple[str | None, Any]]) -> History:
    """Validate stored records (oldest first); unreadable ones are kept apart, never dropped silently."""
    history = History()
    for run_id, extra in extras:
        kind = extra.get("kind") if isinstance(extra, dict) else None
        try:
            if kind == "breaker_reset":
                history.resets.append(BreakerResetRecord.model_validate(extra))
            elif kind == "autonomy_changed":
                history.switches.append(AutonomyChangedRecord.model_validate(extra))
            else:
                history.cycles.append(CycleRecord.model_validate(extra))
        except ValidationError as exc:
            problem = f"{exc.error_count()} validation error(s), first: {exc.errors()[0]['msg']}"
            history.unreadable.append(UnreadableRecord(run_id=run_id, problem=problem))
    return history
