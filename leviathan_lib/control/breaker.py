"""``leviathan breaker reset``: an operator closes a target's circuit breaker, on the record.

The reset is an event on the target's evidence asset (the same place cycles record to), so the next
cycle's guardrails see it and the UI's asset view shows who reset it, when and why. Like the ``airflow``
CLI, this runs where Airflow's configuration (and so its metadata DB) is.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.evidence.records import BreakerResetRecord, evidence_asset_uri


def reset_breaker(target_id: str, *, by: str, reason: str) -> BreakerResetRecord:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    record = BreakerResetRecord(target_id=target_id, reset_at=datetime.now(UTC), by=by, reason=reason)
    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == evidence_asset_uri(target_id)))
        if asset is None:
            raise ValidationFailed([Problem("--target", "target_id", f"no evidence asset for target {target_id!r} "
                                            "(unknown target, or its DAG was never parsed)")])
        asset_manager.register_asset_change(asset=asset, extra=record.model_dump(mode="json"), session=session)
    return record


def cmd_reset(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise ValidationFailed([Problem("--reason", "reason", "say why the breaker may close (it is evidence)")])
    record = reset_breaker(args.target, by=args.by or getpass.getuser(), reason=args.reason)
    print(json.dumps(record.model_dump(mode="json")), file=sys.stdout)
    return 0


def register(subparsers) -> None:
    breaker = subparsers.add_parser("breaker", help="circuit breaker operations")
    sub = breaker.add_subparsers(dest="breaker_command", required=True, metavar="ACTION")
    reset = sub.add_parser("reset", help="close a target's circuit breaker (recorded as evidence)")
    reset.add_argument("--target", required=True, help="target_id")
    reset.add_argument("--reason", required=True, help="why it is safe to try again")
    reset.add_argument("--by", help="who resets it (default: the OS user)")
    reset.set_defaults(func=cmd_reset)
