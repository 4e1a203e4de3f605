"""``leviathan invariants [PATHS...]``: the deployment invariants, as CI runs them.

Without PATHS it checks k8s/ (the alert rules, their PrometheusRule and CloudWatch alarms in step included),
the official Airflow chart rendered with each values file, and every repository file for secrets (minus
k8s/secrets-allowlist.yaml). With PATHS it checks just those
files or directories, allowlist not applied. Exit 0 when clean,
1 with one line per violation (file, object, rule, detail).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from leviathan_lib.deploy import invariants

#: The repository checked: $LEVIATHAN_HOME, else the current folder (the installed package holds no k8s/).
_ROOT = Path(os.environ.get("LEVIATHAN_HOME") or ".")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("invariants", help="check k8s manifests, Helm values and the repo",
                                   description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="files or directories (default: the CI check)")
    parser.add_argument("--root", type=Path, default=_ROOT,
                        help="repository root (default: $LEVIATHAN_HOME, else the current folder)")
    parser.add_argument("--chart", type=Path, default=None,
                        help="official Airflow chart directory (default: ROOT/../shared/specs/airflow-chart/chart)")
    parser.add_argument("--no-chart", action="store_true", help="do not render the chart")
    parser.add_argument("--no-repo", action="store_true", help="do not scan the repository for secrets")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = args.root.resolve()
    if args.paths:
        found = invariants.check_paths(args.paths, root)  # explicit files: no allowlist
    else:
        chart = args.chart or root.parent / "shared" / "specs" / "airflow-chart" / "chart"
        found = invariants.check_default(root, chart, chart=not args.no_chart, repository=not args.no_repo)
    for violation in found:
        print(violation)
    if found:
        print(f"invariants: {len(found)} violation(s)", file=sys.stderr)
        return 1
    print("invariants: clean")
    return 0
