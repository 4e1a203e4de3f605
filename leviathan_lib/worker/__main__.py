"""``python3 -m leviathan_lib.worker``: read a spec, run the attempt, always write a result.

The spec comes from ``--spec PATH`` (``-`` for stdin) or, in a pod, from ``LEVIATHAN_ATTEMPT_SPEC``.
The result goes to ``--output`` (default: the KubernetesPodOperator XCom sidecar file). The exit code
is 0 whenever a result was written, whatever the outcome; non-zero means no result could be written.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

from leviathan_lib.contracts.attempt import AttemptResult, failed_result, result_to_json, spec_from_json, utc_now
from leviathan_lib.contracts.versions import ContractError
from leviathan_lib.worker.attempt import run_attempt
from leviathan_lib.worker.scratch import remove_tree

SPEC_ENV = "LEVIATHAN_ATTEMPT_SPEC"
WORKSPACE_ENV = "LEVIATHAN_WORKSPACE"
DEFAULT_OUTPUT = "/airflow/xcom/return.json"


def _read_spec_text(spec_arg: str | None) -> str:
    if spec_arg == "-":
        return sys.stdin.read()
    if spec_arg:
        return Path(spec_arg).read_text(encoding="utf-8")
    text = os.environ.get(SPEC_ENV)
    if text is None:
        raise OSError(f"no spec: pass --spec PATH or set {SPEC_ENV}")
    return text


def _attempt(args: argparse.Namespace) -> AttemptResult:
    started = utc_now()
    try:
        spec = spec_from_json(_read_spec_text(args.spec))
    except (OSError, UnicodeDecodeError) as exc:
        return failed_result("invalid_spec", f"cannot read the spec: {exc}", started_at=started)
    except ContractError as exc:  # a spec version this image does not read, cut short, or invalid (fields named)
        return failed_result(exc.code, str(exc), started_at=started)

    workspace = args.workspace or os.environ.get(WORKSPACE_ENV)
    own_workspace = workspace is None
    root = Path(workspace) if workspace else Path(tempfile.mkdtemp(prefix="leviathan-worker-"))
    try:
        return run_attempt(spec, root)
    except Exception as exc:  # noqa: BLE001 - any surprise must still produce a result document
        traceback.print_exc()
        return failed_result("internal_error", f"{type(exc).__name__}: {exc}", started_at=started)
    finally:
        if own_workspace and (problem := remove_tree(root)):
            print(f"warning: scratch left behind: {problem}", file=sys.stderr)


def _write(result: AttemptResult, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(result_to_json(result), encoding="utf-8")
    os.replace(tmp, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m leviathan_lib.worker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--spec", help=f"spec JSON file, '-' for stdin (default: ${SPEC_ENV})")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="result JSON file (default: %(default)s)")
    parser.add_argument(
        "--workspace", help=f"empty working directory (default: ${WORKSPACE_ENV} or a temp dir)"
    )
    args = parser.parse_args(argv)

    result = _attempt(args)
    try:
        _write(result, Path(args.output))
    except OSError as exc:
        print(f"error: cannot write the result to {args.output}: {exc}", file=sys.stderr)
        return 1
    error = f" ({result.error.code}: {result.error.message})" if result.error else ""
    print(
        f"outcome: {result.outcome}{error}; changed: {', '.join(result.changed_paths) or 'nothing'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
