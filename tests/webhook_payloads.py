"""GitHub webhook payloads for tests, built from and validated against ``../shared/specs/github/`` (x-webhooks).

:func:`payload` fills every required field of the delivery's schema with a plain value (the first enum
member, a null where allowed), then sets what the test is about (repository, branch, action, ...), and
:func:`validate` fails the test when the result is not a valid delivery: every payload a test sends is one.
:func:`send` signs and posts it the way GitHub does.
"""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from leviathan_lib.core.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared/specs/github/openapi-subset.json"
#: The X-GitHub-Event header and action of each x-webhooks entry.
WEBHOOKS = {
    "push": ("push", None),
    "pull-request-closed": ("pull_request", "closed"),
    "pull-request-synchronize": ("pull_request", "synchronize"),
    "pull-request-review-submitted": ("pull_request_review", "submitted"),
    "issue-comment-created": ("issue_comment", "created"),
    "check-suite-completed": ("check_suite", "completed"),
    "check-run-completed": ("check_run", "completed"),
}


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _spec()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


_STRINGS = {"date-time": "2026-12-06T12:00:00Z", "uri": "https://example.invalid/x", "email": "a@example.invalid",
            "uri-template": "https://example.invalid/{x}", "date": "2026-12-06"}


def _fill(schema: dict[str, Any], depth: int = 0) -> Any:
    schema = _resolve(schema)
    if depth > 40:
        raise RecursionError("schema too deep")
    if "allOf" in schema:
        out: dict[str, Any] = {}
        for part in schema["allOf"]:
            out.update(_fill(part, depth + 1))
        return out
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return _fill(next(s for s in schema[key] if _resolve(s).get("type") != "null"), depth + 1)
    if "enum" in schema:
        return next((v for v in schema["enum"] if v is not None), None)
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _fill(props.get(k, {"type": "string"}), depth + 1) for k in schema.get("required", [])}
    if kind == "array":
        return [_fill(schema["items"], depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return _STRINGS.get(schema.get("format", ""), "x")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    return False


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def _name_repository(repo: dict[str, Any], full_name: str, clone_url: str | None = None) -> None:
    """Make a ``repository`` object of any webhook schema name ``full_name`` (and clone from ``clone_url``)."""
    owner, name = full_name.split("/")
    repo.update(full_name=full_name, name=name, html_url=f"https://github.com/{full_name}",
                clone_url=clone_url or f"https://github.com/{full_name}.git", url=f"https://github.com/{full_name}")
    repo["owner"]["login"] = owner


@cache
def _template(webhook: str) -> dict[str, Any]:
    return _fill({"$ref": f"#/components/schemas/webhook-{webhook}"})


def payload(webhook: str, full_name: str, *, clone_url: str | None = None, branch: str = "main",
            head_repo: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid ``webhook`` delivery (an x-webhooks name) on ``full_name``'s ``branch``; ``fields`` are set by
    dotted path. ``head_repo``: the repository a pull request's head branch lives in (default: the same)."""
    data = copy.deepcopy(_template(webhook))
    if WEBHOOKS[webhook][1]:
        data["action"] = WEBHOOKS[webhook][1]
    _name_repository(data["repository"], full_name, clone_url)
    if webhook == "push":
        data["ref"] = f"refs/heads/{branch}"
    if "pull_request" in data:
        data["pull_request"]["head"]["ref"] = branch
        _name_repository(data["pull_request"]["head"]["repo"], head_repo or full_name)
        _name_repository(data["pull_request"]["base"]["repo"], full_name, clone_url)
        data["pull_request"]["base"]["ref"] = "main"
    if webhook == "check-suite-completed":
        data["check_suite"]["head_branch"] = branch
    if webhook == "check-run-completed":
        data["check_run"]["check_suite"]["head_branch"] = branch
    for path, value in fields.items():
        _set(data, path.replace("__", "."), value)
    validate(webhook, data)
    return data


def validate(webhook: str, data: Any) -> None:
    """Fail unless ``data`` is a valid ``webhook`` delivery under the shared GitHub description."""
    from openapi_schema_validator import OAS30Validator

    validator = OAS30Validator({"$ref": f"#/components/schemas/webhook-{webhook}",
                                "components": _spec()["components"]})
    errors = [f"at {list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data)]
    assert not errors, f"{webhook} payload is not a valid delivery: {errors[:5]}"


def signed(webhook: str, data: dict[str, Any], secret: str, *, delivery: str | None = None,
           event: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and the headers GitHub would send for ``data``."""
    body = json.dumps(data).encode()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
                  EVENT_HEADER: event or WEBHOOKS[webhook][0], DELIVERY_HEADER: delivery or str(uuid.uuid4())}


def send(base: str, webhook: str, data: dict[str, Any], secret: str, **kwargs: Any) -> httpx.Response:
    body, headers = signed(webhook, data, secret, **kwargs)
    return httpx.post(f"{base}/leviathan/webhooks/github", content=body, headers=headers, timeout=30)


#: The deliveries the local forge sends (leviathan_lib/forge/local_webhooks.py), and its template file.
LOCAL_FORGE_WEBHOOKS = ("push", "pull-request-closed", "pull-request-review-submitted", "issue-comment-created",
                        "check-suite-completed")
TEMPLATES = Path(__file__).resolve().parents[1] / "leviathan_lib/forge/webhook_templates.json"


def local_forge_templates() -> str:
    """The local forge's templates: each delivery's required fields filled, as :func:`payload` fills them."""
    data = {w: _template(w) for w in LOCAL_FORGE_WEBHOOKS}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m tests.webhook_payloads: rewrite the local forge's templates
    TEMPLATES.write_text(local_forge_templates(), encoding="utf-8")
