"""Shared paths and helpers for the tests/deploy/ files (offline deployment validation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from leviathan_lib.deploy import invariants

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
CHART = SHARED / "specs" / "airflow-chart" / "chart"
CW_SCHEMA = SHARED / "specs" / "cloudwatch-agent" / "schema.json"
#: The Kubernetes version the manifests target (EKS and kind node image 1.33).
K8S_VERSION = "1.33.0"

if not (CHART / "values.schema.json").is_file() or not CW_SCHEMA.is_file():
    raise RuntimeError(f"shared specs missing: expected {CHART} and {CW_SCHEMA} (see ../shared/README.md)")


def schema_errors(values: dict[str, Any]) -> list[str]:
    """Errors of chart-defaults + ``values`` against the chart's schema, each with its schema path."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = invariants.deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(merged)
    ]


def manifest_objects(*paths: Path) -> list[dict[str, Any]]:
    return [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
