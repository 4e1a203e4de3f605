"""``leviathan webhooks test --target ID``: a signed ``ping`` through the real receiver, as GitHub sends one.

It checks what a real delivery needs: the secret (read from the Airflow connection the receiver reads),
the receiver answering on the API server, the signature, and the repository mapping to the target
(the receiver answers which ``webhooks: true`` targets a change of that repository wakes). A ping
wakes nothing: no cycle starts.
"""

from __future__ import annotations

import argparse
import json
import sys

from leviathan_lib.control import webhook_setup
from leviathan_lib.control.fleet import configured_targets
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.names import change_asset_uri
from leviathan_lib.core.repo_url import parse_repo_url
from leviathan_lib.forge.local_webhooks import post


def _ping(repo_url: str) -> dict[str, object]:
    parsed = parse_repo_url(repo_url)
    url = f"file://{parsed.path}" if parsed.is_local else repo_url
    pair = parsed.owner_name or ("local", parsed.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    return {"zen": "Leviathan webhook test.", "hook_id": 0,
            "repository": {"full_name": "/".join(pair), "clone_url": url, "html_url": url}}


def cmd_test(args: argparse.Namespace) -> int:
    targets = configured_targets()
    target = targets.get(args.target)
    if target is None:
        raise ValidationFailed([Problem("--target", "target", f"no valid target {args.target!r} in the targets folder")
                                ])
    if not target.webhooks:
        print(f"warning: target {args.target} has webhooks: false; deliveries will not wake it")
    try:
        secret = webhook_setup.secret()
    except webhook_setup.SecretMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = args.url or webhook_setup.receiver_url()
    try:
        status, answer = post(url, secret, "ping", _ping(target.target_repo_url))
    except OSError as exc:
        print(f"error: cannot reach the receiver at {url}: {exc}", file=sys.stderr)
        return 2
    print(f"POST {url}: {status} {answer.strip()}")
    try:
        woken = json.loads(answer).get("targets", [])
    except ValueError:
        woken = []
    if status == 200 and args.target in woken:
        print(f"ok: a change of {target.target_repo_url} records an event on {change_asset_uri(args.target)}")
        return 0
    print(f"not ok: a delivery for {target.target_repo_url} would not wake {args.target}")
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    webhooks = subparsers.add_parser("webhooks", help="forge webhook deliveries (docs/spider.md)")
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    test = sub.add_parser("test", help="send a signed ping for a target through the real receiver")
    test.add_argument("--target", required=True, help="target_id")
    test.add_argument("--url", help="the receiver (default: [api] base_url + /leviathan/webhooks/github)")
    test.set_defaults(func=cmd_test)
