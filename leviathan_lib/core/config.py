"""Target configuration: one YAML file per target repository.

The key names are those of the original Leviathan ``ops/autonomy/*.yaml`` files so existing configs
load unchanged. Keys that no longer mean anything on Airflow are accepted with a warning and ignored.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from leviathan_lib.core import names, schedule
from leviathan_lib.core.egress import MAX_RULES, EgressRule, unique_rules
from leviathan_lib.core.errors import CodedError, Problem, ValidationFailed
from leviathan_lib.core.git_refs import check_branch_name
from leviathan_lib.core.limits import TargetLimits
from leviathan_lib.core.pricing import qualified, split_model
from leviathan_lib.core.repo_url import RepoUrlError, parse_repo_url
from leviathan_lib.core.scope import ScopeViolation, path_segments
from leviathan_lib.core.yamlsrc import LineFinder, did_you_mean, field_name, line_finder, load_yaml, yaml11_bool_hint

#: Where the target files are, in precedence order (see :func:`locate_targets_dir`); there is no default.
TARGETS_DIR_ENV = "LEVIATHAN_TARGETS_DIR"
TARGETS_DIR_OPTION = "[leviathan] targets_dir"

#: Keys of the original control-plane design that Airflow replaces; accepted, warned about, unused.
DEPRECATED_KEYS = {
    "control_plane_url": "Airflow is the control plane; the value is ignored",
    "control_plane_token": "Airflow is the control plane; the value is ignored (and must not hold a secret)",
    "spider_url": "Spider is an Airflow plugin now; the value is ignored",
}
#: Keys of the Anthropic-only LLM executor: still honoured, warned about (docs/worker.md says what replaces them).
LEGACY_KEYS = {
    "llm_api_base_url": "put the API base URL in the host of the Airflow connection llm_conn_id",
}

TargetId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
PositiveInt = Annotated[int, Field(ge=1)]


_Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")]


class WorkerResources(BaseModel):
    """Requests and limits of the worker container (Kubernetes quantities)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    cpu_request: _Quantity = "250m"
    memory_request: _Quantity = "256Mi"
    cpu_limit: _Quantity = "1"
    memory_limit: _Quantity = "1Gi"
    #: Size limit of the emptyDir holding the clone.
    workspace_size_limit: _Quantity = "1Gi"


class LeviathanDeprecationWarning(UserWarning):
    """A target key that is accepted but no longer used; ``problem`` names file, line and key for reports."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


#: An Airflow user id as the auth manager gives it (SimpleAuthManager: the user name).
AirflowUserId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")]

#: A Kubernetes object name (DNS subdomain).
K8sName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]


#: One of the repository's checks (``checks:`` of its recipes file).
CheckName = Annotated[str, StringConstraints(pattern=names.CHECK_NAME_PATTERN)]

#: A forge user name (GitHub's login rule: letters, digits and inner single hyphens, at most 39 characters).
GithubLogin = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$", max_length=39)]


class TargetConfig(BaseModel):
    """A validated target file. Strict: a string is never a boolean, a float never an int."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    target_id: TargetId
    #: Validated by :func:`leviathan_lib.core.repo_url.parse_repo_url` (it reaches git as an argument).
    target_repo_url: Annotated[str, StringConstraints(min_length=1)]
    target_branch: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")] = "main"
    #: Missing means OFF: autonomy must be switched on explicitly.
    autonomy_enabled: bool = False
    allowed_path_prefixes: list[str] = Field(default_factory=lambda: [".leviathan/", "docs/"], min_length=1)
    max_open_prs: Annotated[int, Field(ge=0)] = 1
    #: PRs Leviathan may open on this target in any hour (``pr_hourly_limit``).
    max_prs_per_hour: Annotated[int, Field(ge=1, le=100)] = 2
    max_running_attempts: PositiveInt = 1
    #: Failed attempts (failed, timed out, refused by a guardrail) per task definition (``attempts_exhausted``).
    max_attempts_per_task: PositiveInt = 2
    #: Human-initiated rounds per task definition, i.e. per PR: review feedback, ``/leviathan retry``, approval-gate
    #: rejections (``review_rounds_exhausted``).
    max_review_rounds: Annotated[int, Field(ge=1, le=100)] = 5
    #: Times a conflicted PR of one task is brought up to date on its new base (``pr_refresh_limit``).
    max_pr_refreshes: Annotated[int, Field(ge=0, le=20)] = 2
    circuit_breaker_failures: PositiveInt = 2
    schedule_cron: str = "*/5 * * * *"
    #: Spread targets sharing a ``*/n`` minute cron across the interval (core/schedule.py); false: exactly as written.
    schedule_jitter: bool = True
    #: Cycles also start when the forge says something changed (a signed webhook delivery, docs/spider.md);
    #: then ``webhooks_safety_cron`` replaces ``schedule_cron`` as the cadence that catches a lost delivery.
    webhooks: bool = False
    webhooks_safety_cron: str = "H * * * *"
    attempt_timeout_seconds: Annotated[int, Field(ge=1, le=86400)] = 900
    worker_image: str = "leviathan-worker:local"
    worker_namespace: str = "leviathan"
    workspace_dir: str | None = None
    # Keys new on Airflow.
    forge: Literal["local", "github"] = "local"
    forge_conn_id: str | None = None
    #: Open PRs as drafts, and label them (GitHub; the local forge has neither).
    pr_draft: bool = False
    pr_labels: list[Annotated[str, StringConstraints(min_length=1, max_length=50)]] = Field(default_factory=list)
    #: Asked to review / assigned to every new PR (forge logins; the local forge stores them in the record).
    pr_reviewers: list[GithubLogin] = Field(default_factory=list, max_length=15)
    pr_assignees: list[GithubLogin] = Field(default_factory=list, max_length=10)
    #: Delete the ``agent/`` branch of a merged PR (only when nobody but Leviathan pushed to it).
    delete_merged_branches: bool = True
    #: Keep one forge issue listing every task's eligibility and reasons, the PRs, breaker and switch
    #: (docs/pull-requests.md "Dashboard"); its title defaults to "Leviathan dashboard: <target_id>".
    dashboard: bool = False
    dashboard_title: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                                      pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None
    worker_backend: Literal["local", "kubernetes"] = "local"
    backlog_path: str = ".leviathan/backlog.yaml"
    recipes_path: str = ".leviathan/recipes.yaml"
    #: Files or folders no attempt may change, even under allowed_path_prefixes (on top of the recipes
    #: file, the scripts its steps run, .gitattributes, .gitmodules and .github/ anywhere).
    protected_paths: list[str] = Field(default_factory=list)
    # Worker executors and the Kubernetes pod (see docs/worker.md).
    #: Executor of ready tasks that name no recipe: ``recipe`` (such tasks are invalid) or ``llm``.
    executor: Literal["recipe", "llm"] = "recipe"
    #: ``<provider>:<model>`` as pydantic-ai names it (``anthropic:``, ``openai:``, ``azure:``, ``bedrock:``);
    #: a bare name (deprecated) is an Anthropic model.
    llm_model: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")] = (
        "anthropic:claude-sonnet-4-5"
    )
    llm_max_turns: Annotated[int, Field(ge=1, le=500)] = 30
    llm_max_tokens: Annotated[int, Field(ge=1, le=128_000)] = 4096
    llm_max_total_tokens: PositiveInt = 400_000
    llm_cost_cap_usd: Annotated[float, Field(gt=0, strict=False, allow_inf_nan=False)] = 2.0
    #: Tool calls over the attempt, and in one model response.
    llm_max_tool_calls: Annotated[int, Field(ge=1, le=10_000)] = 200
    llm_max_tool_calls_per_turn: Annotated[int, Field(ge=1, le=100)] = 20
    #: Seconds one model request may take (never more than what is left of the attempt), and retries of
    #: a request that got a 429, a 5xx or a timeout.
    llm_request_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 120
    llm_max_retries: Annotated[int, Field(ge=0, le=10)] = 4
    #: Price overrides (USD per million tokens); unset, the price comes from leviathan_lib.core.pricing.
    llm_input_usd_per_mtok: Annotated[float, Field(ge=0, strict=False, allow_inf_nan=False)] | None = None
    llm_output_usd_per_mtok: Annotated[float, Field(ge=0, strict=False, allow_inf_nan=False)] | None = None
    #: Model spend of this target over any 24 hours; once reached, cycles stop before the worker.
    llm_daily_usd: Annotated[float, Field(gt=0, strict=False, allow_inf_nan=False)] | None = None
    llm_api_base_url: str | None = None
    #: Airflow connection (type ``pydanticai``, from apache-airflow-providers-common-ai): host = API base URL,
    #: password = API key. Optional for Bedrock, which uses the worker's AWS role.
    llm_conn_id: str = "leviathan_llm"
    #: Kubernetes Secret (in ``worker_namespace``) and key holding the model API key (kubernetes backend).
    llm_api_key_secret: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")] = (
        "leviathan-llm"
    )
    llm_api_key_secret_key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]{1,253}$")] = (
        "anthropic-api-key"
    )
    worker_service_account: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")] = (
        "leviathan-worker"
    )
    worker_resources: WorkerResources = Field(default_factory=WorkerResources)
    #: Kubernetes Secret holding a READ-ONLY token the worker pod clones with (private repositories).
    #: Never a forge write credential: pushing happens in ``open_pull_request``, outside the pod.
    worker_clone_secret: K8sName | None = None
    worker_clone_secret_key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]{1,253}$")] = "token"
    #: A human approval gate (docs/approval.md): ``plan`` waits after the guardrails chose a task, before the
    #: worker; ``pull_request`` waits after the worker, before anything is pushed. ``none``: no gate.
    approval: Literal["none", "plan", "pull_request"] = "none"
    #: Airflow user ids who may answer the gate (empty: anyone allowed to answer this DAG's required actions).
    approval_assignees: list[AirflowUserId] = Field(default_factory=list, max_length=50)
    #: Seconds the gate waits for an answer; then it rejects (nobody answered).
    approval_timeout_seconds: Annotated[int, Field(ge=1, le=30 * 86400)] = 86400
    #: UNSAFE. Run recipes on the local backend WITHOUT the bubblewrap sandbox when it cannot be built
    #: (recipe code can then read every secret of the Airflow worker). Off: the cycle stops instead.
    unsafe_allow_unsandboxed_recipes: bool = False
    #: Destinations recipe steps may reach through the attempt's egress proxy (package registries), each
    #: ``{host, port}``; every connection is recorded. Empty: recipe steps are offline.
    sandbox_egress: Annotated[list[EgressRule], Field(max_length=MAX_RULES)] = Field(default_factory=list)
    #: Lower resource limits for this target's recipe steps (core/limits.py); the deployment caps them.
    limits: TargetLimits = Field(default_factory=TargetLimits)
    #: The repository's own checks (``checks:`` of the recipes file) every attempt runs on its change before
    #: delivery; a task adds more with its own ``checks:``. A failing one means no PR (docs/worker.md).
    required_checks: list[CheckName] = Field(default_factory=list, max_length=20)
    #: LLM executor: rounds in which a failing check's output goes back to the model before ``checks_failed``.
    llm_check_rounds: Annotated[int, Field(ge=0, le=10)] = 2
    #: A check already failing on the pinned commit: ``skip`` ends the attempt without a PR (not a failure);
    #: ``deliver_with_warning`` delivers and says so in the PR (that check need not pass after the change).
    checks_red_at_base: Literal["skip", "deliver_with_warning"] = "skip"
    #: Attempts that may fix the red CI of one open PR (docs/pull-requests.md "CI"); 0: never.
    max_ci_fix_attempts: Annotated[int, Field(ge=0, le=5)] = 1
    #: ``immediate``: a PR opens when the change is pushed; ``checks_pass``: the agent branch is pushed and its
    #: PR opens once the forge's CI on it is green (after ``ci_wait_minutes`` without any CI: with a note).
    pr_creation: Literal["immediate", "checks_pass"] = "immediate"
    ci_wait_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 30
    #: The team whose limits (the fleet file's ``teams``) this target's PRs and model spend count toward.
    team: TargetId | None = None

    @field_validator("allowed_path_prefixes", "backlog_path", "recipes_path", "protected_paths")
    @classmethod
    def _safe_paths(cls, value: str | list[str]) -> str | list[str]:
        for item in value if isinstance(value, list) else [value]:
            try:
                path_segments(item)
            except ScopeViolation as exc:
                raise ValueError(f"unsafe path: {exc}") from None
        return value

    @field_validator("sandbox_egress")
    @classmethod
    def _unique_egress(cls, value: list[EgressRule]) -> list[EgressRule]:
        return unique_rules(value)

    @field_validator("target_repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        try:
            parse_repo_url(value)
        except RepoUrlError as exc:
            raise ValueError(f"not a repository URL git may be given: {exc}") from None
        return value

    @field_validator("target_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        return check_branch_name(value)

    @field_validator("llm_model")
    @classmethod
    def _qualified_model(cls, value: str) -> str:
        return qualified(value)

    @model_validator(mode="after")
    def _both_prices(self) -> TargetConfig:
        if (self.llm_input_usd_per_mtok is None) != (self.llm_output_usd_per_mtok is None):
            raise ValueError("give both llm_input_usd_per_mtok and llm_output_usd_per_mtok, or neither")
        return self

    @model_validator(mode="after")
    def _assignees_need_a_gate(self) -> TargetConfig:
        if self.approval_assignees and self.approval == "none":
            raise ValueError("approval_assignees needs a gate: set approval to plan or pull_request")
        return self

    @model_validator(mode="after")
    def _one_cadence(self) -> TargetConfig:
        """One cadence is used: a cron of the other one is an error. By value, not by which keys were given:
        the tasks validate the whole dumped config again, defaults included."""
        fields = type(self).model_fields
        if self.webhooks and self.schedule_cron != fields["schedule_cron"].default:
            raise ValueError("schedule_cron is not used with webhooks: true; set webhooks_safety_cron instead")
        if not self.webhooks and self.webhooks_safety_cron != fields["webhooks_safety_cron"].default:
            raise ValueError("webhooks_safety_cron needs webhooks: true")
        return self

    @field_validator("schedule_cron", "webhooks_safety_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return schedule.check(value)

    @field_validator("max_running_attempts")
    @classmethod
    def _one_running(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only 1 is supported: one running cycle per target (max_active_runs=1)")
        return value

    @property
    def dag_id(self) -> str:
        return names.dag_id(self.target_id)

    @property
    def effective_schedule(self) -> str:
        """The cron Airflow runs: ``H`` (and, with ``schedule_jitter``, ``*/n`` minutes) become this target's slot.

        With ``webhooks`` it is the safety net's (the DAG also runs on the target's change asset)."""
        cron = self.webhooks_safety_cron if self.webhooks else self.schedule_cron
        return schedule.spread(cron, self.target_id, jitter=self.schedule_jitter)

    @property
    def dashboard_issue_title(self) -> str:
        return self.dashboard_title or f"Leviathan dashboard: {self.target_id}"

    @property
    def run_timeout_seconds(self) -> int:
        """The longest one cycle may run (its DAG run's timeout): the attempt, an approval's wait, 15 minutes."""
        waits = self.approval_timeout_seconds if self.approval != "none" else 0
        return self.attempt_timeout_seconds + waits + 15 * 60

    def repo_location(self, config_file: Path | None = None) -> str:
        """The repository URL, with a relative local path resolved against the target file's folder."""
        url = self.target_repo_url
        if config_file is None or parse_repo_url(url).kind != "local" or url.startswith("/"):
            return url
        return str((config_file.parent / url).resolve())


def _message(err: ErrorDetails) -> str:
    """One pydantic error as the line a human reads: a did-you-mean for a typo'd key, the literal to write
    for a YAML 1.1 boolean word, and the offending value for any other wrong type."""
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        nested: dict[str, type[BaseModel]] = {"worker_resources": WorkerResources, "sandbox_egress": EgressRule,
                                              "limits": TargetLimits}
        model = nested.get(str(loc[0]), TargetConfig) if len(loc) > 1 else TargetConfig
        close = did_you_mean(str(loc[-1]), model.model_fields)
        return "unknown key" + (close or " (see docs/configuration.md for the accepted keys)")
    hint = yaml11_bool_hint(err["input"]) if err["type"] == "bool_type" else None
    if hint:
        return hint
    message = err["msg"].removeprefix("Value error, ")
    if err["type"].endswith("_type"):
        message += f" (got {type(err['input']).__name__} {err['input']!r})"
    return message


def _problems_from(exc: ValidationError, source: str, lines: LineFinder) -> list[Problem]:
    return [Problem(source, field_name(err["loc"]), _message(err), lines(err["loc"])) for err in exc.errors()]


def parse_target(text: str, source: str) -> TargetConfig:
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ValidationFailed([Problem(source, "", "expected a mapping of target settings")])
    lines = line_finder(text)  # composed only when there is something to report

    def deprecated(key: str, message: str) -> None:
        problem = Problem(source, key, message, lines([key]))
        warnings.warn(LeviathanDeprecationWarning(problem), stacklevel=3)

    for key in sorted(DEPRECATED_KEYS.keys() & data.keys()):
        deprecated(key, f"deprecated key, {DEPRECATED_KEYS[key]}")
        data.pop(key)
    for key in sorted(LEGACY_KEYS.keys() & data.keys()):
        deprecated(key, f"deprecated key, {LEGACY_KEYS[key]}")
    model = data.get("llm_model")
    if isinstance(model, str) and split_model(model)[0] is None:
        deprecated("llm_model", f"a bare model name is deprecated; write 'anthropic:{model}'")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ValidationFailed([Problem(source, str(k), "keys must be strings") for k in bad_keys])
    try:
        return TargetConfig.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(_problems_from(exc, source, lines)) from None


def load_target(path: str | os.PathLike[str]) -> TargetConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed([Problem(str(path), "", f"cannot read file: {exc}")]) from None
    return parse_target(text, str(path))


class TargetsDirError(CodedError):
    """The targets folder is not set, or is not a readable folder: the message names the setting to fix."""

    CODE = "targets_dir_invalid"


@dataclass(frozen=True)
class TargetsLocation:
    """The targets folder and the setting that named it (quoted in every error about it)."""

    path: Path
    setting: str

    def check(self) -> None:
        """Raise :class:`TargetsDirError` unless the folder exists and can be listed and read."""
        where = f"{self.setting} is {str(self.path)!r}"
        if not self.path.is_dir():
            found = "not a folder" if self.path.exists() else "no such folder"
            raise TargetsDirError(f"{where}: {found}; set {self.setting} to the folder of target files")
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise TargetsDirError(f"{where}: the folder cannot be read by this process (user {os.getuid()})")


def locate_targets_dir(env_value: str, option_value: str, base: Path | None) -> TargetsLocation:
    """``$LEVIATHAN_TARGETS_DIR``, else ``[leviathan] targets_dir``; a relative path is taken from ``base``.

    ``base`` is the DAG file's folder when the DAG file asks (MWAA and Composer ship targets in the DAGs
    bucket next to it) and ``[core] dags_folder`` elsewhere. No default: a guess would be a checkout path.
    """
    for setting, value in ((TARGETS_DIR_ENV, env_value), (TARGETS_DIR_OPTION, option_value)):
        if value.strip():
            path = Path(value.strip()).expanduser()
            if not path.is_absolute():
                if base is None:
                    raise TargetsDirError(f"{setting} is {value.strip()!r}: a relative path needs the DAG folder")
                path = base / path
            return TargetsLocation(path, setting)
    raise TargetsDirError(
        f"the targets folder is not set: set {TARGETS_DIR_OPTION} in airflow.cfg "
        f"(or AIRFLOW__LEVIATHAN__TARGETS_DIR, or {TARGETS_DIR_ENV}) to the folder of target files"
    )


def target_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
