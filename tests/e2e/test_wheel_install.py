"""The wheel, installed next to Airflow in a fresh virtual environment, is all a deployment needs.

The wheel is built from a copy of the repository's sources with ``pip wheel``; the fresh environment reuses
the shared ``.venv``'s Airflow through a folder of links that leaves out every ``leviathan`` file (the
editable install's finder and metadata), so what runs is the installed wheel, not the checkout. From an empty
working folder with a fresh AIRFLOW_HOME (SQLite), an empty plugins folder and a DAG folder holding only
the one-line DAG file and its targets (the MWAA / Composer layout): the DAGs parse, ``airflow plugins``
and ``airflow providers list`` show Leviathan from its entry points, and one cycle opens a PR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from leviathan_lib.core.names import dag_id
from leviathan_lib.forge.local import LocalForge

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "leviathan_targets.py"
#: Never visible in the fresh environment: the checkout's editable install of this package.
_HIDDEN = ("leviathan-", "leviathan_lib", "__editable__", "__editable___leviathan")


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[:4]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # From a copy of the sources: pip builds in the source folder, and a build/ and leviathan.egg-info left in
    # the checkout would make a Python started there find the package twice (tests/spider/test_plugin_once.py).
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copytree(ROOT / "leviathan_lib", src / "leviathan_lib", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(out),
          str(src)], env=dict(os.environ), cwd=out, timeout=600)
    [built] = out.glob("leviathan-*.whl")
    return built


def test_the_wheel_holds_what_runs_and_refuses_another_airflow(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("leviathan_lib/spider/plugin.py", "leviathan_lib/provider.py", "leviathan_lib/py.typed",
                   "leviathan_lib/worker/prompts/edit-v1.md", "leviathan_lib/demo/repo/.leviathan/backlog.yaml",
                   "leviathan_lib/demo/repo/.leviathan/recipes.yaml", "leviathan_lib/demo/repo/docs/index.md",
                   "leviathan_lib/demo/repo/.leviathan/checks/lint_docs.py", "leviathan_lib/worker/prompts/edit-v4.md",
                   "leviathan_lib/spider/templates/target.html", "leviathan_lib/spider/templates/view.js"):
        assert needed in names, needed
    assert not any(n.startswith(("dags/", "plugins/", "tests/")) for n in names)
    meta = zipfile.ZipFile(wheel)
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    entry_points = meta.read(f"{dist_info}/entry_points.txt").decode()
    assert "[airflow.plugins]\nleviathan = leviathan_lib.spider.plugin:LeviathanSpiderPlugin" in entry_points
    assert "[apache_airflow_provider]\nprovider_info = leviathan_lib.provider:get_provider_info" in entry_points
    requires = meta.read(f"{dist_info}/METADATA").decode()
    [airflow] = [Requirement(line.removeprefix("Requires-Dist: ")) for line in requires.splitlines()
                 if line.startswith("Requires-Dist: apache-airflow") and "providers" not in line]
    # pip refuses another Airflow at install time, naming this requirement.
    assert [v for v in ("3.2.9", "3.3.0", "3.3.2", "3.3.9", "3.4.0", "4.0.0") if airflow.specifier.contains(v)] == [
        "3.3.2", "3.3.9"]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv: the wheel installed, the shared Airflow linked in minus any ``leviathan`` file."""
    base = tmp_path_factory.mktemp("venv")
    env_dir = base / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], env=dict(os.environ), cwd=base, timeout=120)
    shared = Path(sysconfig.get_paths()["purelib"])
    view = base / "shared-without-leviathan"
    view.mkdir()
    for entry in shared.iterdir():
        if not entry.name.startswith(_HIDDEN) and entry.suffix != ".pth":
            (view / entry.name).symlink_to(entry)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(env_dir / "bin" / "python"), "-c", purelib], env=_clean_env(), cwd=base, timeout=60).stdout
                .strip())
    (site / "shared-airflow.pth").write_text(f"{view}\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--no-deps",
          "--no-index", "--disable-pip-version-check", "-q", str(wheel)], env=_clean_env(), cwd=base, timeout=300)
    return env_dir


def _clean_env() -> dict[str, str]:
    """The caller's environment without the checkout: no PYTHONPATH, no Leviathan or Airflow settings."""
    drop = ("PYTHONPATH", "AIRFLOW_HOME", "AIRFLOW_CONFIG", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items()
            if k not in drop and not k.startswith(("LEVIATHAN_", "AIRFLOW__"))}


@pytest.fixture(scope="module")
def deployment(venv, tmp_path_factory) -> tuple[dict[str, str], Path, Path]:
    """An empty working folder, a fresh AIRFLOW_HOME, the one-line DAG file and a target beside it."""
    top = tmp_path_factory.mktemp("deployment")
    home, dags, plugins, cwd = top / "airflow", top / "dags", top / "plugins", top / "cwd"
    for folder in (home, dags, plugins, cwd):
        folder.mkdir()
    (dags / "leviathan.py").write_text(DAG_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    env = {
        **_clean_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=60",
        "AIRFLOW__LEVIATHAN__TARGETS_DIR": "targets",  # relative: next to the DAG file
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-jwt-secret-not-used-outside-tests-64-bytes-long-hs-512",
        "LEVIATHAN_STATE_DIR": str(top / "state"),
    }
    python = str(venv / "bin" / "python")
    code = ("import sys; from pathlib import Path; from leviathan_lib.demo import create_demo_target; "
            "print(create_demo_target(Path(sys.argv[1]), target_id='wheel', targets_dir=Path(sys.argv[2])))")
    made = _run([python, "-c", code, str(top), str(dags / "targets")], env=env, cwd=cwd, timeout=120)
    assert Path(made.stdout.strip()) == dags / "targets" / "wheel.yaml"
    _run([python, "-m", "airflow", "db", "migrate"], env=env, cwd=cwd, timeout=600)
    return env, cwd, top


def _airflow(venv: Path, env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> str:
    return _run([str(venv / "bin" / "python"), "-m", "airflow", *args], env=env, cwd=cwd, timeout=timeout).stdout


def _json(out: str) -> Any:
    """The ``-o json`` document of a command's stdout (Airflow may log lines before it)."""
    start = next(i for i, line in enumerate(out.splitlines()) if line[:1] in ("[", "{"))
    return json.JSONDecoder().raw_decode("\n".join(out.splitlines()[start:]))[0]


def test_the_installed_wheel_not_the_checkout_is_imported(venv, deployment):
    env, cwd, _ = deployment
    out = _run([str(venv / "bin" / "python"), "-c", "import leviathan_lib, airflow; print(leviathan_lib.__file__)"],
               env=env, cwd=cwd, timeout=120).stdout.strip()
    assert Path(out).is_relative_to(venv) and not Path(out).is_relative_to(ROOT), out


def test_the_one_line_dag_file_builds_the_targets_dag(venv, deployment):
    env, cwd, _ = deployment
    _airflow(venv, env, cwd, "dags", "reserialize")  # the DAG processor's parse, into the metadata DB
    assert _json(_airflow(venv, env, cwd, "dags", "list-import-errors", "-o", "json")) == []
    listed = {d["dag_id"] for d in _json(_airflow(venv, env, cwd, "dags", "list", "-o", "json"))}
    assert listed == {dag_id("wheel")}


def test_plugins_and_providers_come_from_the_entry_points(venv, deployment):
    env, cwd, _ = deployment
    plugins = _json(_airflow(venv, env, cwd, "plugins", "-o", "json"))
    spider = [p for p in plugins if p["name"] == "leviathan_spider"]
    assert len(spider) == 1, plugins
    assert "leviathan==0.1.0" in str(spider[0].get("source")), spider  # the entry point, not a plugins file
    providers = _json(_airflow(venv, env, cwd, "providers", "list", "-o", "json"))
    ours = [p for p in providers if p["package_name"] == "leviathan"]
    assert len(ours) == 1 and ours[0]["version"] == "0.1.0", providers


def test_one_cycle_of_the_installed_package_opens_a_pull_request(venv, deployment):
    env, cwd, top = deployment
    # A new installation starts with autonomy off (fail closed); the install docs switch it on like this.
    _run([str(venv / "bin" / "leviathan"), "resume", "--reason", "first start"], env=env, cwd=cwd, timeout=300)
    out = _airflow(venv, env, cwd, "dags", "test", dag_id("wheel"), timeout=600)
    prs = LocalForge(top / "repos" / "wheel.git").list_open_prs()
    assert [(p.number, p.head, p.base) for p in prs] == [(1, "agent/docs-quickstart/1", "main")], out[-6000:]
