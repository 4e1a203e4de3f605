"""The attempt spec and result, as the worker's modules and their callers import them.

The documents themselves, their versions and schema snapshots live in :mod:`leviathan_lib.contracts.attempt`
(one home); this module names them where the worker's code has always found them.
"""

from __future__ import annotations

from leviathan_lib.contracts.attempt import (
    MAX_PATCH_BYTES,
    MAX_RESULT_BYTES,
    AttemptResult,
    AttemptSpec,
    CheckResult,
    ChecksSpec,
    ContinuePr,
    ErrorInfo,
    LlmExecutorSpec,
    RecipeExecutorSpec,
    Usage,
    failed_result,
    result_from_json,
    result_to_json,
    spec_from_json,
    utc_now,
)

__all__ = [
    "MAX_PATCH_BYTES", "MAX_RESULT_BYTES", "AttemptResult", "AttemptSpec", "CheckResult", "ChecksSpec", "ContinuePr",
    "ErrorInfo", "LlmExecutorSpec", "RecipeExecutorSpec", "Usage", "failed_result", "result_from_json",
    "result_to_json", "spec_from_json", "utc_now",
]
