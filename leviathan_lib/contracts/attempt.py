"""The JSON contract between the orchestrator and a worker: the attempt spec and the attempt result.

The same two documents travel through a local subprocess (files) and a Kubernetes pod (an env var in,
the XCom sidecar file out), so the worker never depends on how it was started; the orchestrator and the
worker image may be different releases. Both documents carry a version (``spec_version``,
``result_version``) and are read through :class:`~leviathan_lib.contracts.versions.Reader`: the worker
refuses a spec version it does not read (``spec_version_unsupported``), the orchestrator a result version it
does not read (``result_version_unsupported``), each naming what to upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from leviathan_lib.contracts.versions import Reader
from leviathan_lib.core.backlog import RecipeName
from leviathan_lib.core.egress import MAX_RULES, EgressReport, EgressRule, unique_rules
from leviathan_lib.core.limits import AttemptLimits, CleanupReport, LimitsReport
from leviathan_lib.core.names import require_agent_branch
from leviathan_lib.core.repo_url import RepoUrlError, parse_repo_url
from leviathan_lib.core.scope import ScopeViolation, path_segments

#: The versions this release writes; each side also reads the version before (none yet).
SPEC_VERSION: Final = 1
RESULT_VERSION: Final = 1
#: What the local backend's ``run_worker`` adds to the result it stores as its XCom: when the attempt started,
#: before the worker process (the pod's is its ``started_at``).
STARTED_ANNOTATION = "attempt_started_at"

CommitSha = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
#: Timestamps accept ISO 8601 strings even in strict mode: a result read back from an XCom is a dict.
Timestamp = Annotated[AwareDatetime, Field(strict=False)]

#: The largest patch an attempt may produce; the worker stops at it and delivery re-checks it.
MAX_PATCH_BYTES = 1_000_000
#: The largest result document read (the patch, at most 100 steps' and 50 checks' output tails, usage):
#: a bigger one is never parsed or stored (``result_too_large``).
MAX_RESULT_BYTES = 8_000_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def _check_safe_path(value: str) -> str:
    try:
        path_segments(value)
    except ScopeViolation as exc:
        raise ValueError(f"unsafe path: {exc}") from None
    return value


class RecipeExecutorSpec(BaseModel):
    """Run a named recipe from the target's own recipes file."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["recipe"]
    recipe: RecipeName
    recipes_path: str = ".leviathan/recipes.yaml"

    @field_validator("recipes_path")
    @classmethod
    def _safe_recipes_path(cls, value: str) -> str:
        return _check_safe_path(value)


class LlmExecutorSpec(BaseModel):
    """Let a model edit files through a bounded tool-use loop (:mod:`leviathan_lib.worker.llm`).

    ``model`` is ``<provider>:<model>`` as pydantic-ai names it (a bare name is an Anthropic model).
    Prices are per million tokens; the orchestrator fills them from :mod:`leviathan_lib.core.pricing` or
    the target's override, and None means unknown (the attempt is refused: its cost cannot be bounded).
    The API key is never part of the spec: the worker reads it from ``LEVIATHAN_LLM_API_KEY`` (or the
    legacy ``ANTHROPIC_API_KEY``); Bedrock needs none (the worker's AWS role).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["llm"]
    model: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")]
    max_turns: Annotated[int, Field(ge=1, le=500)] = 30
    #: Output tokens per model response (the Messages API ``max_tokens``).
    max_tokens: Annotated[int, Field(ge=1, le=128_000)] = 4096
    #: Input plus output tokens over the whole attempt.
    max_total_tokens: Annotated[int, Field(ge=1)] = 400_000
    cost_cap_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0
    input_usd_per_mtok: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    output_usd_per_mtok: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    #: Tool calls over the attempt, and in one model response.
    max_tool_calls: Annotated[int, Field(ge=1, le=10_000)] = 200
    max_tool_calls_per_turn: Annotated[int, Field(ge=1, le=100)] = 20
    #: One request's timeout (capped by the attempt deadline) and retries on 429, 5xx and timeouts.
    request_timeout_seconds: Annotated[float, Field(gt=0, le=3600, strict=False)] = 120.0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 4
    api_base_url: str | None = None
    #: AWS region of a Bedrock model (else the worker's ``AWS_REGION``).
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")] | None = None
    prompt: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "edit-v4"
    #: A reviewer's feedback on the PR this attempt continues; rendered into the prompt when given.
    review_feedback: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    backlog_path: str = ".leviathan/backlog.yaml"

    @field_validator("backlog_path")
    @classmethod
    def _safe_backlog_path(cls, value: str) -> str:
        return _check_safe_path(value)

    @field_validator("api_base_url")
    @classmethod
    def _plain_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        if parts.username or parts.password or parts.query:
            raise ValueError("must not contain credentials or a query")
        return value


#: A discriminated union on ``kind``.
ExecutorSpec = Annotated[RecipeExecutorSpec | LlmExecutorSpec, Field(discriminator="kind")]

#: Why an attempt continues an open PR (stable codes): ``pr_conflicted`` (the PR conflicts with its base and
#: is brought up to date), ``changes_requested`` (a review asked for changes), ``retry_command`` (a user with
#: write permission commented ``/leviathan retry``), ``rebase_command`` (``/leviathan rebase``: on the base).
ContinueReason = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class ContinuePr(BaseModel):
    """An attempt that delivers to Leviathan's existing open PR instead of opening one.

    ``head_sha`` is the commit Leviathan last pushed to ``branch``: the lease. Delivery pushes only while
    the branch still points there (someone else's push makes the PR a human's, never rewritten).
    ``start`` says where the worker starts: ``base`` runs it on the current base commit and force-updates
    the branch (a conflicted PR brought up to date); ``branch`` starts from ``head_sha`` and delivery adds
    one commit on top, a fast-forward (review feedback). ``feedback`` is untrusted text from the forge
    (a review): the executor may show it to the model as data, never follow it as an instruction.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    #: None: a branch pushed before its PR, which opens once CI passes (``pr_creation: checks_pass``).
    number: Annotated[int, Field(ge=1)] | None
    branch: Annotated[str, StringConstraints(pattern=r"^agent/[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")]
    head_sha: CommitSha
    start: Literal["base", "branch"]
    why: ContinueReason
    feedback: Annotated[str, StringConstraints(max_length=20_000)] | None = None

    @field_validator("branch")
    @classmethod
    def _plain_branch(cls, value: str) -> str:
        if ".." in value or value.endswith(("/", ".lock", ".")) or "//" in value:
            raise ValueError("not a plain agent/ branch name")
        return require_agent_branch(value)


class ChecksSpec(BaseModel):
    """The repository's own checks this attempt runs (the target's ``required_checks`` and the task's
    ``checks``), defined in the recipes file at ``recipes_path`` of the checkout."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    names: Annotated[list[RecipeName], Field(min_length=1, max_length=50)]
    recipes_path: str = ".leviathan/recipes.yaml"
    #: What a check already failing on the start commit means: ``skip`` ends the attempt
    #: (``checks_red_at_base``), ``deliver_with_warning`` goes on (that check need not pass after the change).
    on_red_at_base: Literal["skip", "deliver_with_warning"] = "skip"
    #: LLM executor: rounds in which a failing check's output goes back to the model.
    llm_rounds: Annotated[int, Field(ge=0, le=10)] = 2

    @field_validator("recipes_path")
    @classmethod
    def _safe_recipes_path(cls, value: str) -> str:
        return _check_safe_path(value)


class AttemptSpec(BaseModel):
    """Everything a worker needs for one attempt. It holds no secret: the worker needs no credential."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    spec_version: Literal[1]  # SPEC_VERSION
    target_id: Annotated[str, StringConstraints(min_length=1)]
    repo_url: Annotated[str, StringConstraints(min_length=1)]
    commit_sha: CommitSha
    task: dict[str, Any]
    allowed_path_prefixes: Annotated[list[str], Field(min_length=1)]
    executor: ExecutorSpec
    attempt: Annotated[int, Field(ge=1)]
    timeout_seconds: Annotated[int, Field(ge=1)]
    max_patch_bytes: Annotated[int, Field(ge=1, le=MAX_PATCH_BYTES)] = MAX_PATCH_BYTES
    #: How recipe steps are contained (:mod:`leviathan_lib.worker.sandbox`): ``bwrap`` (the default: the
    #: worker refuses to run a recipe when it cannot build the sandbox), ``pod`` (the Kubernetes pod is the
    #: sandbox), ``none`` (the target opted out with ``unsafe_allow_unsandboxed_recipes``).
    sandbox: Literal["bwrap", "pod", "none"] = "bwrap"
    #: The open PR this attempt continues (None: a fresh attempt that opens its own PR). With
    #: ``start: branch`` the worker checks out ``continue_pr.head_sha`` instead of ``commit_sha`` and its
    #: patch is against that commit.
    continue_pr: ContinuePr | None = None
    #: Destinations recipe steps may reach through the attempt's egress proxy (the target's
    #: ``sandbox_egress``; :mod:`leviathan_lib.worker.egress`). Empty: no proxy, the steps are offline.
    egress: Annotated[list[EgressRule], Field(max_length=MAX_RULES)] = Field(default_factory=list)
    #: Resource limits of each sandboxed step (the target's within the deployment's caps; core/limits.py).
    limits: AttemptLimits = Field(default_factory=AttemptLimits)
    #: The repository's own checks to run before and after the change (None: none).
    checks: ChecksSpec | None = None

    @property
    def start_sha(self) -> str:
        """The commit the worker checks out and diffs against."""
        if self.continue_pr is not None and self.continue_pr.start == "branch":
            return self.continue_pr.head_sha
        return self.commit_sha

    @field_validator("repo_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """The one repository-URL parser decides (the worker clones without any credential in it)."""
        try:
            parse_repo_url(value)
        except RepoUrlError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allowed_path_prefixes")
    @classmethod
    def _safe_prefixes(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_safe_path(item)
        return value

    @field_validator("egress")
    @classmethod
    def _unique_egress(cls, value: list[EgressRule]) -> list[EgressRule]:
        return unique_rules(value)


class ErrorInfo(BaseModel):
    """Why an attempt did not succeed.

    Codes are stable. From the worker: ``invalid_spec``, ``clone_failed``, ``recipes_invalid``,
    ``recipe_unknown``, ``recipe_failed``, ``diff_failed``, ``no_changes``, ``scope_violation``,
    ``patch_too_large``, ``patch_not_utf8``, ``sandbox_unavailable``, ``resource_limit`` (a step exceeded a
    limit: ``AttemptResult.limits.exceeded`` names it), ``internal_error``; from whoever reads a result
    ``result_too_large`` (over :data:`MAX_RESULT_BYTES`: not read); from the repository's own checks
    (:mod:`leviathan_lib.worker.checks`) ``checks_failed``, ``check_timeout``, ``checks_modified_tree``,
    ``check_unknown`` and ``checks_red_at_base``; from the LLM
    executor the ``llm_*`` codes of :mod:`leviathan_lib.worker.llm`. From a backend: ``timeout``,
    ``worker_crashed``; from ``run_worker`` before a worker starts: ``llm_connection_missing``,
    ``llm_connection_invalid``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
    message: str


class Usage(BaseModel):
    """Model usage of one attempt (absent for executors that use no model)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    model: str
    turns: Annotated[int, Field(ge=0)]
    input_tokens: Annotated[int, Field(ge=0)]
    output_tokens: Annotated[int, Field(ge=0)]
    cost_usd: Annotated[float, Field(ge=0, strict=False)]
    #: Model requests (retries not counted) and the sha256 of the prompt template that produced them.
    requests: Annotated[int, Field(ge=0)] = 0
    prompt_sha256: str | None = None


class CheckResult(BaseModel):
    """One run of one of the repository's checks: on the start commit (``phase: base``) or on the change."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: RecipeName
    phase: Literal["base", "change"]
    passed: bool
    #: The exit code of the last step run (None: killed at ``timeout_seconds``, or it could not start).
    exit_code: int | None
    duration_seconds: Annotated[float, Field(ge=0, strict=False)]
    #: The last 4 KB of its combined stdout and stderr, redacted (untrusted text: render it inert).
    output_tail: str
    #: How many bytes it wrote in all (only the tail is kept).
    output_bytes: Annotated[int, Field(ge=0)] = 0
    timed_out: bool = False
    #: It changed files in the checkout (a check never adds to a change).
    modified_tree: bool = False
    #: Why it could not run (a program not found), else None.
    error: str | None = None
    #: A base result read from the worker's cache instead of run again.
    cached: bool = False


#: Outcomes of an attempt. ``checks_red_at_base``: the repository's own checks already failed on the start
#: commit (``checks_red_at_base: skip``): no change was made, and it is no failure of the worker.
AttemptOutcome = Literal["succeeded", "failed", "timed_out", "checks_red_at_base"]


class AttemptResult(BaseModel):
    """What one attempt produced. ``patch`` is ``git diff --binary`` against ``base_sha``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    result_version: Literal[1]  # RESULT_VERSION
    outcome: AttemptOutcome
    error: ErrorInfo | None
    base_sha: CommitSha | None
    changed_paths: list[str]
    patch: str
    executor: dict[str, Any]
    started_at: Timestamp
    finished_at: Timestamp
    #: Token and cost usage of a model executor; None for recipes.
    usage: Usage | None = None
    #: Every connection recipe steps made through the egress proxy, allowed or refused (None: no proxy ran).
    egress: EgressReport | None = None
    #: The limits recipe steps ran under and how they held (None: no sandboxed step ran).
    limits: LimitsReport | None = None
    #: The local backend's clean-up of scratch (None: nothing to report).
    cleanup: CleanupReport | None = None
    #: The repository's own checks: each one's base run and its last run on the change.
    checks: list[CheckResult] = Field(default_factory=list)
    #: Checks that already failed on the start commit (the PR warns about them; they need not pass after).
    checks_red_at_base: list[RecipeName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> AttemptResult:
        if self.outcome == "succeeded":
            if self.error is not None or not self.patch or not self.changed_paths or self.base_sha is None:
                raise ValueError("a succeeded result needs base_sha, changed_paths and a patch, and no error")
        elif self.error is None or self.patch:
            raise ValueError(f"a {self.outcome} result needs an error and an empty patch")
        return self


SPEC_READER = Reader("attempt spec", AttemptSpec, "spec_version", (SPEC_VERSION,),
                     {"version_unsupported": "spec_version_unsupported", "truncated": "invalid_spec",
                      "invalid": "invalid_spec"})
RESULT_READER = Reader("attempt result", AttemptResult, "result_version", (RESULT_VERSION,),
                       {"version_unsupported": "result_version_unsupported", "truncated": "result_truncated",
                        "invalid": "result_invalid", "too_large": "result_too_large"},
                       annotations=frozenset({STARTED_ANNOTATION}), max_bytes=MAX_RESULT_BYTES)


def spec_from_json(data: str | bytes) -> AttemptSpec:
    """Parse a spec document; :class:`~leviathan_lib.contracts.versions.ContractError` names why it cannot be."""
    return SPEC_READER.read(data)


def result_to_json(result: AttemptResult) -> str:
    return result.model_dump_json()


def result_from_json(data: str | bytes | Mapping[str, Any]) -> AttemptResult:
    """Parse a result document, from text or from the dict an XCom pull returns (the local backend's
    ``attempt_started_at`` annotation is dropped); ContractError names why it cannot be read."""
    return RESULT_READER.read(data)


def failed_result(  # noqa: PLR0913 — every field a failure may carry, all keyword-only
    code: str,
    message: str,
    *,
    started_at: datetime,
    outcome: Literal["failed", "timed_out", "checks_red_at_base"] = "failed",
    base_sha: str | None = None,
    changed_paths: list[str] | None = None,
    executor: dict[str, Any] | None = None,
    usage: Usage | None = None,
    egress: EgressReport | None = None,
    checks: list[CheckResult] | None = None,
) -> AttemptResult:
    return AttemptResult(
        result_version=RESULT_VERSION,
        outcome=outcome,
        error=ErrorInfo(code=code, message=message),
        base_sha=base_sha,
        changed_paths=changed_paths or [],
        patch="",
        executor=executor or {},
        started_at=started_at,
        finished_at=utc_now(),
        usage=usage,
        egress=egress,
        checks=checks or [],
        checks_red_at_base=[c.name for c in checks or [] if c.phase == "base" and not c.passed],
    )
