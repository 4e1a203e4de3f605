"""``leviathan egress-policy TARGET_FILE...``: the NetworkPolicy each kubernetes-backend target's
``sandbox_egress`` needs, as YAML for review and ``kubectl apply -f -``.

Rendered offline from the target files (nothing is applied, no cluster is asked). What a NetworkPolicy
cannot express (a host name) is printed as a ``#`` comment and on stderr: the proxy in the pod still
refuses everything else, but the pod cannot reach that host until the operator allows its addresses.
Exit 0; 2 when a file does not validate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from leviathan_lib.core.config import load_target


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("egress-policy", help="render the NetworkPolicy of targets' sandbox_egress",
                                   description=__doc__)
    parser.add_argument("files", nargs="+", type=Path, help="target files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leviathan_lib.worker.backends.kubernetes import egress_network_policy  # the cncf provider: only here

    documents = []
    for path in args.files:
        target = load_target(path)
        if target.worker_backend != "kubernetes":
            print(f"# {path}: worker_backend is {target.worker_backend}: the bubblewrap sandbox needs no policy")
            continue
        policy, notes = egress_network_policy(target)
        for note in notes:
            print(f"{path}: {note}", file=sys.stderr)
        comments = "".join(f"# {target.target_id}: {note}\n" for note in notes)
        documents.append(comments + (yaml.safe_dump(policy, sort_keys=False) if policy else ""))
    print("---\n".join(d for d in documents if d), end="")
    return 0
