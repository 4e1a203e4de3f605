"""``leviathan stop`` / ``leviathan resume``: the emergency runbook as two commands (docs/operations.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from leviathan_lib.control.airflow_api import DEFAULT_CONN_ID
from leviathan_lib.core.errors import Problem, ValidationFailed


def _reason(args: argparse.Namespace) -> str:
    if not args.reason.strip():
        raise ValidationFailed([Problem("--reason", "reason", "say why (it is recorded as evidence)")])
    return args.reason.strip()


def cmd_stop(args: argparse.Namespace) -> int:
    from leviathan_lib.control.airflow_api import AirflowApiHook
    from leviathan_lib.control.emergency import stop

    api = AirflowApiHook(args.conn_id)
    try:
        report = stop(by=args.by or getpass.getuser(), reason=_reason(args), wait_seconds=args.wait, api=api)
    finally:
        api.close()
    print(json.dumps({**report.model_dump(mode="json"), "idle": report.idle}, indent=2))
    if report.api_problem:
        print(f"error: autonomy is off, but Airflow's API could not be used, so DAGs may be unpaused and workers "
              f"running: {report.api_problem}", file=sys.stderr)
    if report.pod_problem:
        print(f"error: {report.pod_problem}", file=sys.stderr)
    if report.activity is not None and not report.activity.idle:
        print("error: Leviathan work is still active (see activity); run `leviathan stop` again or wait",
              file=sys.stderr)
    return 0 if report.idle and not report.pod_problem else 1


def cmd_resume(args: argparse.Namespace) -> int:
    from leviathan_lib.control.emergency import resume
    from leviathan_lib.control.switch import UnknownTarget

    try:
        dags = resume(by=args.by or getpass.getuser(), reason=_reason(args), targets=args.target or [])
    except UnknownTarget as exc:
        raise ValidationFailed([Problem("--target", "target_id", str(exc))]) from None
    print(json.dumps({"global_enabled": True, "unpaused_dags": dags}, indent=2))
    if not dags:
        print("note: no target was unpaused; unpause each one with --target ID (or in the Airflow UI)",
              file=sys.stderr)
    return 0


def register(subparsers) -> None:
    stop = subparsers.add_parser("stop", help="EMERGENCY: switch autonomy off, pause all DAGs, stop workers")
    stop.add_argument("--reason", required=True, help="why (recorded as an autonomy.changed event)")
    stop.add_argument("--by", help="who (default: the OS user)")
    stop.add_argument("--wait", type=float, default=60, help="seconds to wait for running work to end (default 60)")
    stop.add_argument("--conn-id", default=DEFAULT_CONN_ID,
                      help="Airflow connection to the API server, with a user that may edit DAGs "
                           f"(default {DEFAULT_CONN_ID})")
    stop.set_defaults(func=cmd_stop)
    resume = subparsers.add_parser("resume", help="switch autonomy on again and unpause the named targets")
    resume.add_argument("--reason", required=True, help="why it is safe again (recorded)")
    resume.add_argument("--target", action="append", help="target id to unpause (repeatable)")
    resume.add_argument("--by", help="who (default: the OS user)")
    resume.set_defaults(func=cmd_resume)
