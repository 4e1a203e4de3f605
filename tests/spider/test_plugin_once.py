"""The Spider plugin is registered once, whatever folder Airflow starts in: no "already registered" plugin
import error in the UI.

Airflow reads plugins from every distribution ``importlib.metadata`` finds on ``sys.path``. The editable
install's metadata is in ``.venv``; a ``leviathan.egg-info`` in the checkout (pip's editable build writes one,
scripts/bootstrap.sh removes it; ``pip wheel .`` writes another) is a second copy for any Python that has
the checkout on ``sys.path``, as ``python -m`` and ``python -c`` started there do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from leviathan_lib.demo import runner

ROOT = Path(__file__).resolve().parents[2]
#: Airflow's own plugin loading, as the API server runs it (``-c`` puts the working folder on sys.path).
PROBE = ("import json; from airflow import plugins_manager as pm; pm.ensure_plugins_loaded(); "
         "print(json.dumps({'plugins': [p['name'] for p in pm.get_plugin_info()], 'errors': pm.get_import_errors()}))")


def _load_plugins(cwd: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("where", ["checkout", "parent", "elsewhere"])
def test_the_plugin_registers_once_from_any_working_folder(where: str, tmp_path: Path):
    cwd = {"checkout": ROOT, "parent": ROOT.parent, "elsewhere": tmp_path}[where]
    loaded = _load_plugins(cwd, dict(os.environ))
    stray = list(ROOT.glob("*.egg-info"))
    assert loaded == {"plugins": ["leviathan_spider"], "errors": {}}, f"metadata in the checkout: {stray}"


def _stray_egg_info(folder: Path) -> None:
    """What ``pip install -e .`` or ``pip wheel .`` leaves in a checkout: the package's metadata, once more."""
    installed = metadata.distribution("leviathan")
    egg_info = folder / "leviathan.egg-info"
    egg_info.mkdir()
    (egg_info / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: leviathan\nVersion: {installed.version}\n",
                                       encoding="utf-8")
    (egg_info / "entry_points.txt").write_text(installed.read_text("entry_points.txt") or "", encoding="utf-8")


def test_the_demo_registers_it_once_even_next_to_a_stray_egg_info(tmp_path: Path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _stray_egg_info(checkout)
    plain = _load_plugins(checkout, dict(os.environ))  # what the newcomer saw: the same plugin twice
    assert plain["plugins"] == ["leviathan_spider"]
    assert list(plain["errors"].values()) == ["Plugin 'leviathan_spider' already registered, skipping"]
    # The demo's processes never put their working folder on sys.path.
    demo = runner._environment(tmp_path / "demo", 18999)
    assert _load_plugins(checkout, demo) == {"plugins": ["leviathan_spider"], "errors": {}}
