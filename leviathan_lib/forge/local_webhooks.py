"""The local forge's webhook deliveries: what GitHub would send, signed and posted to Spider's receiver.

So the embedded forge reacts in seconds like GitHub, through the same path: when
``LEVIATHAN_FORGE_WEBHOOK_URL`` (e.g. ``http://127.0.0.1:8080/leviathan/webhooks/github``) and
``LEVIATHAN_FORGE_WEBHOOK_SECRET`` (the secret of the Airflow connection ``leviathan_webhook_github``) are
set, ``leviathan forge merge|close|comment|review|status`` post the delivery GitHub sends for that action,
and so does a ``git push`` to a repository with :func:`install_hook` (the demo's).
The payloads are GitHub's webhook schemas with every required field filled (``webhook_templates.json``,
generated from the shared description by ``python -m tests.webhook_payloads``); only the repository, the
branch and the pull request number carry meaning. A delivery that cannot be sent is reported, never
fatal: the target's safety-net cron still runs its cycle.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import urllib.request
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from leviathan_lib.core.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

URL_ENV = "LEVIATHAN_FORGE_WEBHOOK_URL"
SECRET_ENV = "LEVIATHAN_FORGE_WEBHOOK_SECRET"
TIMEOUT_SECONDS = 5.0
#: The X-GitHub-Event header of each template.
EVENTS = {"push": "push", "pull-request-closed": "pull_request", "pull-request-review-submitted":
          "pull_request_review", "issue-comment-created": "issue_comment", "check-suite-completed": "check_suite"}


@cache
def _templates() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(__file__).parent / "webhook_templates.json").read_text(encoding="utf-8"))
    return data


def _repository(template: dict[str, Any], bare: Path) -> None:
    name = bare.name.removesuffix(".git")
    url = bare.resolve().as_uri()
    template.update(full_name=f"local/{name}", name=name, clone_url=url, html_url=url, url=url)
    template["owner"]["login"] = "local"


def build(webhook: str, bare: Path, *, branch: str | None = None, number: int | None = None,
          base: str = "main", merged: bool = False) -> dict[str, Any]:
    """The ``webhook`` delivery (a template name) about ``bare``: its branch, or pull request ``number``."""
    data = copy.deepcopy(_templates()[webhook])
    _repository(data["repository"], bare)
    if webhook == "push":
        data["ref"] = f"refs/heads/{branch or base}"
    if "pull_request" in data:
        pull = data["pull_request"]
        pull["number"] = number or 1
        pull["merged"] = merged
        pull["head"]["ref"], pull["base"]["ref"] = branch or base, base
        for side in ("head", "base"):
            _repository(pull[side]["repo"], bare)
        if "number" in data:
            data["number"] = pull["number"]
    if webhook == "issue-comment-created":
        data["issue"]["number"] = number or 1
    if webhook == "check-suite-completed":
        data["check_suite"]["head_branch"] = branch or base
    return data


def configured() -> tuple[str, str] | None:
    url, secret = os.environ.get(URL_ENV, "").strip(), os.environ.get(SECRET_ENV, "")
    return (url, secret) if url and secret else None


def post(url: str, secret: str, event: str, data: dict[str, Any]) -> tuple[int, str]:
    """Sign and post one ``event`` delivery as GitHub does; the receiver's HTTP status and answer."""
    body = json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body), EVENT_HEADER: event,
        DELIVERY_HEADER: str(uuid.uuid4()), "User-Agent": "Leviathan-local-forge"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - the configured URL
            return int(response.status), response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(4096).decode("utf-8", "replace")


def emit(bare: Path, *deliveries: tuple[str, dict[str, Any]]) -> str | None:
    """Post each ``(webhook, build kwargs)`` when configured; a line saying what happened (None: not configured)."""
    config = configured()
    if config is None:
        return None
    url, secret = config
    answers = []
    for webhook, fields in deliveries:
        try:
            status, _ = post(url, secret, EVENTS[webhook], build(webhook, bare, **fields))
            answers.append(f"{EVENTS[webhook]} {status}")
        except OSError as exc:
            answers.append(f"{EVENTS[webhook]} not sent ({type(exc).__name__}: {exc})")
    return "webhook: " + ", ".join(answers)


#: The hook a bare repository runs after a ``git push`` (a Python file: no shell).
HOOK = "post-receive"
HOOK_TEXT = """#!{python}
# Leviathan's local forge: a push posts GitHub's push delivery to $LEVIATHAN_FORGE_WEBHOOK_URL when it is
# set (leviathan_lib/forge/local_webhooks.py).
from leviathan_lib.forge.local_webhooks import post_receive

raise SystemExit(post_receive())
"""
_NO_COMMIT = "0" * 40


def install_hook(bare: Path) -> Path:
    """Make ``git push`` to ``bare`` post the push delivery, as GitHub sends one for every push."""
    hook = bare / "hooks" / HOOK
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK_TEXT.format(python=sys.executable), encoding="utf-8")
    hook.chmod(0o755)
    return hook


def post_receive(lines: Iterable[str] | None = None, bare: Path | None = None) -> int:
    """Git's ``post-receive``: one ``push`` delivery per updated branch. Leviathan's own git runs with hooks
    off (``core.hooksPath=/dev/null``), so every push seen here is a human's: a backlog change on the target
    branch, or a push to a PR's branch, reaches the next cycle in seconds. Never fails the push."""
    bare = bare or Path(os.environ.get("GIT_DIR", ".")).resolve()
    for line in lines if lines is not None else sys.stdin:
        _old, new, ref = (line.split() + ["", "", ""])[:3]
        if not ref.startswith("refs/heads/") or new == _NO_COMMIT:
            continue
        note = emit(bare, ("push", {"branch": ref.removeprefix("refs/heads/")}))
        if note:
            print(note)
    return 0
