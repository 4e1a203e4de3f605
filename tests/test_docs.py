"""The docs follow the code: every module they name exists, every target key is documented, the README's
commands run, and ``leviathan demo env`` prints what the demo's processes really use."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from leviathan_lib.cli.main import build_parser
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.demo import runner

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
LEVIATHAN = [sys.executable, "-m", "leviathan_lib.cli.main"]

PATH_REF = re.compile(r"leviathan_lib/[\w./-]*[\w/]")
DOTTED_REF = re.compile(r"\bleviathan_lib(?:\.\w+)+")


def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defines(module: Path, name: str) -> bool:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def _dotted_exists(dotted: str) -> bool:
    """``leviathan_lib.a.b`` is a module, or ``leviathan_lib.a.b.name`` names something defined in one."""
    if _module_file(dotted):
        return True
    module, _, name = dotted.rpartition(".")
    found = _module_file(module)
    return found is not None and _defines(found, name)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_module_a_doc_names_exists(doc: Path):
    text = doc.read_text(encoding="utf-8")
    missing = [ref for ref in sorted(set(PATH_REF.findall(text))) if not (ROOT / ref).exists()]
    missing += [ref for ref in sorted(set(DOTTED_REF.findall(text))) if not _dotted_exists(ref)]
    assert not missing, f"{doc.name} names modules or files that do not exist: {missing}"


def test_the_reference_check_catches_stale_names():
    assert PATH_REF.findall("see `leviathan_lib/kpo.py`.") == ["leviathan_lib/kpo.py"]
    assert not (ROOT / "leviathan_lib/kpo.py").exists()
    assert not _dotted_exists("leviathan_lib.gitcmd")
    assert not _dotted_exists("leviathan_lib.core.config.NoSuchThing")
    assert _dotted_exists("leviathan_lib.core.config.TargetConfig")
    assert _dotted_exists("leviathan_lib.worker")


def test_every_target_key_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text[text.index("## (a) Target files"):text.index("## (b) The backlog")]
    documented = set(re.findall(r"^\| `(\w+)`(?: / `(\w+)`)?", section, re.M))
    keys = {k for pair in documented for k in pair if k}
    missing = sorted(set(TargetConfig.model_fields) - keys)
    assert not missing, f"docs/configuration.md (a) has no row for target keys {missing}"


def test_no_commit_stamps_in_docs():
    stamped = [d.name for d in DOCS if re.search(r"checked against commit", d.read_text(encoding="utf-8"), re.I)]
    assert not stamped


def test_the_readme_validate_example_runs_on_a_fresh_checkout(tmp_path: Path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^\.venv/bin/leviathan validate (.+)$", readme, re.M)
    assert line, "README.md lost its `leviathan validate` example"
    files = shlex.split(line.group(1).split("#")[0])
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", *files], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
    assert tracked.returncode == 0, f"the README validates files a fresh checkout lacks: {tracked.stderr}"
    proc = subprocess.run([*LEVIATHAN, "validate", *files], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_env_prints_the_demo_processes_environment(tmp_path: Path):
    demo = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(PYTHONPATH=str(ROOT), AIRFLOW__CORE__LOAD_EXAMPLES="True")
    # Relative --dir, run from another folder: every printed path must still be absolute.
    proc = subprocess.run([*LEVIATHAN, "demo", "env", "--dir", "demo", "--port", "18999"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "unset AIRFLOW__CORE__LOAD_EXAMPLES" in proc.stdout.splitlines()

    # What a shell gets from eval "$(leviathan demo env)".
    script = 'eval "$1" && env -0'
    shell = subprocess.run(["bash", "-c", script, "bash", proc.stdout], capture_output=True, text=True,
                           timeout=30, env=env)
    assert shell.returncode == 0, shell.stderr
    evaluated = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)

    expected = runner._environment(demo.resolve(), 18999)
    for key in ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "LEVIATHAN_HOME", "LEVIATHAN_TARGETS_DIR", "LEVIATHAN_STATE_DIR"):
        assert Path(evaluated[key]).is_absolute(), (key, evaluated[key])
        assert evaluated[key] == expected[key], key
    assert evaluated["AIRFLOW_HOME"] == str(demo.resolve() / "airflow")
    assert evaluated["AIRFLOW_CONFIG"] == str(ROOT / "airflow.cfg")
    airflow_vars = {k: v for k, v in evaluated.items() if k.startswith("AIRFLOW__")}
    assert airflow_vars == {k: v for k, v in expected.items() if k.startswith("AIRFLOW__")}
    # The generated keys are the ones in secrets.env, which the demo itself then reuses.
    secrets = dict(line.split("=", 1) for line in (demo / "secrets.env").read_text().splitlines())
    assert set(secrets) == {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY",
                            "LEVIATHAN_FORGE_WEBHOOK_SECRET"}
    assert all(evaluated[k] == v and len(v) >= 32 for k, v in secrets.items())
    assert (demo / "secrets.env").stat().st_mode & 0o777 == 0o600
    # The local forge posts its deliveries to the demo's receiver, which verifies them with the same secret.
    assert evaluated["LEVIATHAN_FORGE_WEBHOOK_URL"] == "http://127.0.0.1:18999/leviathan/webhooks/github"
    connection = json.loads(evaluated["AIRFLOW_CONN_LEVIATHAN_WEBHOOK_GITHUB"])
    assert connection == {"conn_type": "generic", "password": secrets["LEVIATHAN_FORGE_WEBHOOK_SECRET"]}


def test_demo_options_still_reach_the_demo():
    parser = build_parser()
    args = parser.parse_args(["demo", "--reset", "--port", "18998", "--exit"])
    assert (args.func, args.reset, args.port, args.exit) == (runner.run, True, 18998, True)
    args = parser.parse_args(["demo", "--port", "18997", "env"])
    assert (args.func, args.port, args.dir) == (runner.print_env, 18997, ROOT / ".demo")


def test_demo_env_describes_the_port_its_demo_started_on(tmp_path: Path, monkeypatch, capsys):
    demo = tmp_path / "demo"
    demo.mkdir()
    monkeypatch.delenv("LEVIATHAN_DEMO_PORT", raising=False)

    def exported_port(*argv: str) -> str:
        args = build_parser().parse_args(["demo", "env", "--dir", str(demo), *argv])
        assert args.func(args) == 0
        return dict(line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.splitlines()
                    if line.startswith("export "))["AIRFLOW__API__PORT"]

    assert exported_port() == "8080"  # no demo started there yet
    monkeypatch.setenv("LEVIATHAN_DEMO_PORT", "18126")
    assert exported_port() == "18126"
    runner.record_port(demo, 18127)  # what `leviathan demo --port 18127` does when it starts
    assert exported_port() == "18127"
    assert exported_port("--port", "18128") == "18128"
