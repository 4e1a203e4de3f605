"""JSON Schema snapshots of every boundary document, committed as ``schemas/<name>.v<major>.json``.

A snapshot is what a reader of that major version was promised. ``tests/contracts/test_schemas.py`` fails
when a model's schema differs from its snapshot: either the change is compatible and the snapshot is
rewritten, or it is not and the document's version is bumped (a new file; the old one stays, as the
fixture of what the one-version-back reader still reads). Regenerate with::

    PYTHONPATH=. .venv/bin/python -m leviathan_lib.contracts.snapshots --write
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from leviathan_lib.contracts.attempt import RESULT_VERSION, SPEC_VERSION, AttemptResult, AttemptSpec
from leviathan_lib.contracts.recipes import RECIPES_VERSION, RecipesFile
from leviathan_lib.contracts.xcom import XCOM_VERSION, GuardrailResult, ReadResult
from leviathan_lib.evidence.records import (
    EVIDENCE_VERSION,
    AutonomyChangedRecord,
    BreakerResetRecord,
    CycleRecord,
)

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
REGENERATE = "PYTHONPATH=. .venv/bin/python -m leviathan_lib.contracts.snapshots --write"


@dataclass(frozen=True)
class Document:
    """A boundary document: its model, current major version and who writes and reads it."""

    model: type[BaseModel]
    version: int
    travels: str


DOCUMENTS: dict[str, Document] = {
    "attempt_spec": Document(AttemptSpec, SPEC_VERSION, "orchestrator -> worker (file, pod env var, spec XCom)"),
    "attempt_result": Document(AttemptResult, RESULT_VERSION,
                               "worker -> orchestrator (file, XCom sidecar, return_value XCom)"),
    "recipes_file": Document(RecipesFile, RECIPES_VERSION,
                             "the target repository -> the worker, leviathan validate, the cycle's reads (YAML)"),
    "xcom_read": Document(ReadResult, XCOM_VERSION, "plan -> the cycle's later tasks (XCom read)"),
    "xcom_guardrails": Document(GuardrailResult, XCOM_VERSION, "plan -> the cycle's later tasks (XCom guardrails)"),
    "cycle_record": Document(CycleRecord, EVIDENCE_VERSION, "record_evidence -> every later reader (asset events)"),
    "breaker_reset_record": Document(BreakerResetRecord, EVIDENCE_VERSION, "leviathan breaker reset -> cycles"),
    "autonomy_changed_record": Document(AutonomyChangedRecord, EVIDENCE_VERSION, "switch changes -> cycles"),
}


def snapshot_path(name: str, version: int) -> Path:
    return SCHEMA_DIR / f"{name}.v{version}.json"


def _shape(node: Any) -> Any:
    """The schema without ``title`` and ``description`` (docstrings): a reworded comment is no contract change."""
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items()
                if k not in ("title", "description") or not isinstance(v, str)}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return node


def schema_text(name: str) -> str:
    """The schema of document ``name`` as committed: sorted keys, two-space indent, a final newline."""
    document = DOCUMENTS[name]
    schema: dict[str, Any] = {"$comment": f"{name} version {document.version}: {document.travels}",
                              **_shape(document.model.model_json_schema(mode="validation"))}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale() -> list[str]:
    """Documents whose current schema differs from (or lacks) its snapshot."""
    out = []
    for name, document in DOCUMENTS.items():
        path = snapshot_path(name, document.version)
        if not path.is_file() or path.read_text(encoding="utf-8") != schema_text(name):
            out.append(f"{name}.v{document.version}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leviathan_lib.contracts.snapshots",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the snapshots of the current versions")
    args = parser.parse_args(argv)
    if not args.write:
        changed = stale()
        print("\n".join(changed) or "all snapshots current")
        return 1 if changed else 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, document in DOCUMENTS.items():
        snapshot_path(name, document.version).write_text(schema_text(name), encoding="utf-8")
        print(snapshot_path(name, document.version).relative_to(SCHEMA_DIR.parent.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
