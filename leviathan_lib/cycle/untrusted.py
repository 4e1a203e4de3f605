"""The worker's result, made safe to store: nothing it produced reaches an XCom, a log or evidence unscanned.

A worker runs untrusted code (recipes, a model) on untrusted content, so its result document is
treated as hostile, whichever backend carried it: every string (output tails, transcript, messages,
claimed paths) is redacted with the secret rules, and a patch that is too large, undecodable, or
brings in a credential shape is dropped and the attempt becomes a failure with a stable code
(``patch_too_large``, ``patch_unreadable``, ``secret_detected``). Delivery re-checks the real diff
anyway; this is what keeps the patch and the output out of the metadata DB when they must not be there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from leviathan_lib.contracts.attempt import MAX_PATCH_BYTES, AttemptResult, failed_result, result_from_json, utc_now
from leviathan_lib.contracts.versions import ContractError
from leviathan_lib.core.secrets_scan import redact_text, scan_bytes
from leviathan_lib.cycle.patch_reader import PatchUnreadable, read_patch

#: Fields of the result that are not worker output (set by the contract) or are handled on their own.
_KEPT = {"result_version", "outcome", "base_sha", "started_at", "finished_at", "patch"}


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        return {redact_text(str(k)): _redact(v) for k, v in value.items()}
    return value


def patch_problem(patch: str, *, limit: int = MAX_PATCH_BYTES) -> tuple[str, str] | None:
    """``(code, message)`` when ``patch`` must not be stored or applied; None when it may.

    Messages name rules and sizes only, never content.
    """
    size = len(patch.encode("utf-8", "surrogateescape"))
    if size > limit:
        return "patch_too_large", f"patch is {size} bytes, the limit is {limit}"
    try:
        content = read_patch(patch, limit=limit)
    except PatchUnreadable as exc:
        return "patch_unreadable", f"the patch cannot be scanned: {exc}"
    if content.largest_binary > limit:
        return "patch_too_large", f"a binary hunk inflates to {content.largest_binary} bytes, the limit is {limit}"
    rules = {f.rule for f in scan_bytes(content.text)}
    for data in content.binary:
        rules.update(f.rule for f in scan_bytes(data))
    if rules:
        return "secret_detected", f"the patch holds possible secrets ({', '.join(sorted(rules))})"
    return None


def sanitize_result(result: AttemptResult) -> AttemptResult:
    """``result`` with all worker output redacted; a patch that may not be kept becomes a failed attempt."""
    data = result.model_dump(mode="json")
    clean = {k: (v if k in _KEPT else _redact(v)) for k, v in data.items()}
    problem = patch_problem(result.patch) if result.patch else None
    if problem is None:
        return AttemptResult.model_validate(clean)
    code, message = problem
    return failed_result(
        code, message, started_at=result.started_at, base_sha=result.base_sha,
        changed_paths=clean["changed_paths"], executor=clean["executor"], usage=result.usage,
        egress=result.egress,
    ).model_copy(update={"limits": result.limits, "cleanup": result.cleanup})


def sanitize_result_document(raw: Any) -> dict[str, Any]:
    """The pod's result document (the XCom sidecar's JSON, or its text when it is not JSON) as a sanitized
    result document.

    A document that is not a valid result is replaced, never stored: its content is unknown. A result
    version this orchestrator does not read, a cut-short document or a field it does not know is named
    (``result_version_unsupported``, ``result_truncated``, ``result_invalid``, ``result_too_large``); anything else is
    ``worker_crashed``.
    """
    try:
        if not isinstance(raw, (Mapping, str, bytes)):
            raise TypeError(type(raw).__name__)
        result = result_from_json(raw)
    except ContractError as exc:
        result = failed_result(exc.code, f"the worker pod's result cannot be read: {exc}", started_at=utc_now())
    except (ValidationError, TypeError, ValueError):
        result = failed_result("worker_crashed", "the worker pod left no valid result document",
                               started_at=utc_now())
    return sanitize_result(result).model_dump(mode="json")
