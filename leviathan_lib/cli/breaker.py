"""``leviathan breaker reset``: close a target's circuit breaker, or the fleet breaker (``--fleet``), on the
record (see ``control.breaker``)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from leviathan_lib.control.breaker import reset_breaker, reset_fleet_breaker
from leviathan_lib.core.errors import Problem, ValidationFailed


def cmd_reset(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise ValidationFailed([Problem("--reason", "reason", "say why the breaker may close (it is evidence)")])
    if (args.target is None) == (not args.fleet):
        raise ValidationFailed([Problem("--target", "target_id", "give either --target ID or --fleet")])
    by = args.by or getpass.getuser()
    record = reset_fleet_breaker(by=by, reason=args.reason) if args.fleet else \
        reset_breaker(args.target, by=by, reason=args.reason)
    print(json.dumps(record.model_dump(mode="json")), file=sys.stdout)
    return 0


def register(subparsers) -> None:
    breaker = subparsers.add_parser("breaker", help="circuit breaker operations")
    sub = breaker.add_subparsers(dest="breaker_command", required=True, metavar="ACTION")
    reset = sub.add_parser("reset", help="close a target's circuit breaker, or the fleet breaker (recorded as "
                                         "evidence)")
    reset.add_argument("--target", help="target_id")
    reset.add_argument("--fleet", action="store_true", help="close the fleet breaker (every target stops while open)")
    reset.add_argument("--reason", required=True, help="why it is safe to try again")
    reset.add_argument("--by", help="who resets it (default: the OS user)")
    reset.set_defaults(func=cmd_reset)
