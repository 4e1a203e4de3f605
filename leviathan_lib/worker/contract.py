"""The JSON contract between the orchestrator and a worker.

The same two documents travel through a local subprocess (files) and a Kubernetes pod (an env var in,
the XCom sidecar file out), so the worker never depends on how it was started. Both documents carry a
version so either side can refuse a document it does not understand instead of guessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
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

from leviathan_lib.scope import ScopeViolation, path_segments

#: Recipe names share the task-id alphabet so they are safe in logs, branch names and file names.
RecipeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
CommitSha = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
#: Timestamps accept ISO 8601 strings even in strict mode: a result read back from an XCom is a dict.
Timestamp = Annotated[AwareDatetime, Field(strict=False)]

_SCP_LIKE = re.compile(r"^[^/@:]+@[^/:]+:")


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


#: A discriminated union on ``kind``: add e.g. ``LlmExecutorSpec`` (``kind: "llm"``) as a member.
ExecutorSpec = Annotated[RecipeExecutorSpec, Field(discriminator="kind")]


class AttemptSpec(BaseModel):
    """Everything a worker needs for one attempt. It holds no secret: the worker needs no credential."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    spec_version: Literal[1]
    target_id: Annotated[str, StringConstraints(min_length=1)]
    repo_url: Annotated[str, StringConstraints(min_length=1)]
    commit_sha: CommitSha
    task: dict[str, Any]
    allowed_path_prefixes: Annotated[list[str], Field(min_length=1)]
    executor: ExecutorSpec
    attempt: Annotated[int, Field(ge=1)]
    timeout_seconds: Annotated[int, Field(ge=1)]
    max_patch_bytes: Annotated[int, Field(ge=1)] = 1_000_000

    @field_validator("repo_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        if value.startswith("-"):
            raise ValueError("must not start with '-'")
        if "://" in value:
            parts = urlsplit(value)
            if parts.password is not None or (parts.username and parts.scheme in ("http", "https")):
                raise ValueError("must not contain credentials (the worker clones without any)")
        elif not _SCP_LIKE.match(value) and "@" in value.split("/", 1)[0]:
            raise ValueError("must not contain credentials (the worker clones without any)")
        return value

    @field_validator("allowed_path_prefixes")
    @classmethod
    def _safe_prefixes(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_safe_path(item)
        return value


class ErrorInfo(BaseModel):
    """Why an attempt did not succeed.

    Codes are stable. From the worker: ``invalid_spec``, ``clone_failed``, ``recipes_invalid``,
    ``recipe_unknown``, ``recipe_failed``, ``diff_failed``, ``no_changes``, ``scope_violation``,
    ``patch_too_large``, ``patch_not_utf8``, ``internal_error``. From a backend: ``timeout``,
    ``worker_crashed``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
    message: str


class AttemptResult(BaseModel):
    """What one attempt produced. ``patch`` is ``git diff --binary`` against ``base_sha``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    result_version: Literal[1]
    outcome: Literal["succeeded", "failed", "timed_out"]
    error: ErrorInfo | None
    base_sha: CommitSha | None
    changed_paths: list[str]
    patch: str
    executor: dict[str, Any]
    started_at: Timestamp
    finished_at: Timestamp

    @model_validator(mode="after")
    def _consistent(self) -> AttemptResult:
        if self.outcome == "succeeded":
            if self.error is not None or not self.patch or not self.changed_paths or self.base_sha is None:
                raise ValueError("a succeeded result needs base_sha, changed_paths and a patch, and no error")
        elif self.error is None or self.patch:
            raise ValueError(f"a {self.outcome} result needs an error and an empty patch")
        return self


def spec_to_json(spec: AttemptSpec) -> str:
    return spec.model_dump_json()


def spec_from_json(data: str | bytes) -> AttemptSpec:
    """Parse a spec document; raises :class:`pydantic.ValidationError` when it is not a valid v1 spec."""
    return AttemptSpec.model_validate_json(data)


def result_to_json(result: AttemptResult) -> str:
    return result.model_dump_json()


def result_from_json(data: str | bytes | Mapping[str, Any]) -> AttemptResult:
    """Parse a result document, from text or from the dict an XCom pull returns."""
    if isinstance(data, Mapping):
        data = json.dumps(dict(data))
    return AttemptResult.model_validate_json(data)


def failed_result(
    code: str,
    message: str,
    *,
    started_at: datetime,
    outcome: Literal["failed", "timed_out"] = "failed",
    base_sha: str | None = None,
    changed_paths: list[str] | None = None,
    executor: dict[str, Any] | None = None,
) -> AttemptResult:
    return AttemptResult(
        result_version=1,
        outcome=outcome,
        error=ErrorInfo(code=code, message=message),
        base_sha=base_sha,
        changed_paths=changed_paths or [],
        patch="",
        executor=executor or {},
        started_at=started_at,
        finished_at=utc_now(),
    )
