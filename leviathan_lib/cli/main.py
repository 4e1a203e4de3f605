"""Leviathan: operate the backlog-to-pull-request robot that runs on Apache Airflow.

Each command group lives in its own module exposing ``register(subparsers)``; user errors exit 2 with
one line per problem on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from leviathan_lib.core.errors import ValidationFailed

#: Modules that contribute sub-commands.
COMMAND_MODULES = [
    "leviathan_lib.cli.forge",
    "leviathan_lib.cli.validate",
    "leviathan_lib.cli.plan",
    "leviathan_lib.demo.runner",
    "leviathan_lib.cli.breaker",
    "leviathan_lib.cli.evidence",
    "leviathan_lib.cli.invariants",
    "leviathan_lib.cli.ops",
    "leviathan_lib.cli.egress",
    "leviathan_lib.cli.webhooks",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leviathan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationFailed as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
