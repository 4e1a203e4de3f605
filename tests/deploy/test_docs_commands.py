"""Every command in the deploy docs is either run here or marked as needing a real cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.k8s_support import ROOT

DOCS = [ROOT / "docs" / "deploy.md", ROOT / "docs" / "runbook.md"]
_FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
_MARKS = {"sh tested", "sh needs-a-real-cluster"}


def _blocks():
    for doc in DOCS:
        for match in _FENCE.finditer(doc.read_text()):
            yield doc.name, match["info"].strip(), match["body"]


def test_every_code_block_is_marked():
    unmarked = [(doc, info, body.splitlines()[0]) for doc, info, body in _blocks() if info not in _MARKS]
    assert unmarked == []
    assert any(info == "sh tested" for _, info, _ in _blocks())


def _tested_commands():
    return [line for _, info, body in _blocks() if info == "sh tested"
            for line in body.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("command", sorted(set(_tested_commands())))
def test_tested_command_runs(command):
    if command.startswith("kubectl") and shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "KUBECONFIG": "/dev/null", "BC_SKIP_MAPPING": "TRUE"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
