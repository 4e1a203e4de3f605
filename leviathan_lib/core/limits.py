"""Resource limits of one attempt's sandboxed steps: what a target asks for, what the deployment allows,
and what the worker reports held.

A target file may *lower* the limits (``limits: {processes, memory_mb, cpu_seconds, disk_mb,
open_files}``); the deployment caps them in airflow.cfg ``[leviathan]`` (``max_attempt_processes``, ...).
A target asking for more than a cap gets the cap, with a warning, never more. Pure: models and arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from leviathan_lib.core.errors import Problem

#: Which limit a step exceeded (the error code is ``resource_limit``; this names the limit).
LimitKind = Literal["processes", "memory", "cpu", "disk", "open_files"]
#: How the limits were enforced: a cgroup the worker created for the step (v2, or v1 on a host that still
#: mounts it), or per-process rlimits plus a size-bounded tmpfs and the worker's watch (see docs/security.md).
Mechanism = Literal["cgroup-v2", "cgroup-v1", "rlimit"]
#: The error code of an attempt whose step exceeded a limit.
RESOURCE_LIMIT = "resource_limit"

_Processes = Annotated[int, Field(ge=8, le=100_000)]
_MemoryMb = Annotated[int, Field(ge=64, le=1_048_576)]
_CpuSeconds = Annotated[int, Field(ge=1, le=86_400)]
_DiskMb = Annotated[int, Field(ge=1, le=1_048_576)]
_OpenFiles = Annotated[int, Field(ge=32, le=1_048_576)]


class TargetLimits(BaseModel):
    """A target's ``limits:``; an unset key means the deployment's cap."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    #: Processes (and threads) alive at once in one step's sandbox.
    processes: _Processes | None = None
    #: Memory of one step's sandbox, its /tmp and HOME tmpfs included.
    memory_mb: _MemoryMb | None = None
    #: CPU time of one attempt's steps together.
    cpu_seconds: _CpuSeconds | None = None
    #: What one attempt's steps may add to the checkout (and the largest file a step may write).
    disk_mb: _DiskMb | None = None
    #: Open files of each process.
    open_files: _OpenFiles | None = None


class AttemptLimits(BaseModel):
    """The limits an attempt runs under (the defaults are the deployment caps' defaults)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    processes: _Processes = 256
    memory_mb: _MemoryMb = 2048
    cpu_seconds: _CpuSeconds = 900
    disk_mb: _DiskMb = 1024
    open_files: _OpenFiles = 1024


#: Which field of :class:`AttemptLimits` each limit is.
LIMIT_FIELDS: dict[str, str] = {"processes": "processes", "memory": "memory_mb", "cpu": "cpu_seconds",
                                "disk": "disk_mb", "open_files": "open_files"}
#: airflow.cfg ``[leviathan]`` option → limit.
CAP_OPTIONS: dict[str, str] = {f"max_attempt_{name}": name for name in AttemptLimits.model_fields}


class LimitsReport(AttemptLimits):
    """What held for an attempt's steps (the result's and the evidence's ``limits``)."""

    mechanism: Mechanism
    #: The limit a step exceeded (None: none was).
    exceeded: LimitKind | None = None


class CleanupReport(BaseModel):
    """The local backend's clean-up: scratch a crashed attempt left behind, and what could not be removed."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    swept_dirs: Annotated[int, Field(ge=0)] = 0
    swept_bytes: Annotated[int, Field(ge=0)] = 0
    #: One line per path that could not be removed (the attempt's own outcome stands).
    problems: list[str] = Field(default_factory=list)


def caps_from(options: Mapping[str, str], source: str = "airflow.cfg [leviathan]") -> AttemptLimits:
    """The deployment caps from ``[leviathan]`` option values (unset or empty: the default); ValueError names
    the option when a value is not a valid number for it."""
    values: dict[str, int] = {}
    for option, name in CAP_OPTIONS.items():
        raw = (options.get(option) or "").strip()
        if raw:
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"{source} {option} = {raw!r}: not a whole number") from None
    try:
        return AttemptLimits.model_validate(values)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def resolve_limits(asked: TargetLimits, caps: AttemptLimits, source: str = "") -> tuple[AttemptLimits, list[Problem]]:
    """The target's limits within the caps, and a warning for each value the cap lowered."""
    values: dict[str, int] = {}
    warnings: list[Problem] = []
    for name in AttemptLimits.model_fields:
        cap, wanted = getattr(caps, name), getattr(asked, name)
        values[name] = cap if wanted is None else min(wanted, cap)
        if wanted is not None and wanted > cap:
            option = next(o for o, n in CAP_OPTIONS.items() if n == name)
            warnings.append(Problem(source, f"limits.{name}",
                                    f"{wanted} is above the deployment's cap ({option} = {cap}); the cap applies"))
    return AttemptLimits.model_validate(values), warnings
