"""A task process builds only its own DAG: parse cost per task does not grow with the number of targets.

Airflow's task runner parses the DAG file before every task with the parsing context naming the DAG
(``_AIRFLOW_PARSING_CONTEXT_DAG_ID``); the DAG processor parses it without. Both are exercised here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leviathan_lib.orchestrator import dag_factory

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"


def _targets(directory: Path, n: int) -> None:
    for i in range(n):
        (directory / f"t{i:02d}.yaml").write_text(f"target_id: t{i:02d}\ntarget_repo_url: /srv/t{i:02d}.git\n",
                                                  encoding="utf-8")
    (directory / "broken.yaml").write_text("target_id: [unclosed\n", encoding="utf-8")


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The target files build_all parses (YAML + validation), in order."""
    seen: list[str] = []
    real = dag_factory.load_target

    def counting(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(dag_factory, "load_target", counting)
    return seen


def test_a_task_process_parses_one_of_fifty_target_files_and_builds_one_dag(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 50)
    monkeypatch.setenv(CONTEXT, "leviathan__t07")
    dags = dag_factory.build_all(targets_dir)
    assert list(dags) == ["leviathan__t07"]
    assert loads == ["t07.yaml"]  # not the other 49, and no error DAG for broken.yaml
    assert dags["leviathan__t07"].task_dict["plan"].op_kwargs["config"]["target_repo_url"] == "/srv/t07.git"


def test_the_dag_processor_still_builds_every_dag_and_error_dag(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 50)
    monkeypatch.delenv(CONTEXT, raising=False)
    dags = dag_factory.build_all(targets_dir)
    assert len(dags) == 51 and "leviathan__invalid__broken" in dags
    assert len(loads) == 51
    # An error DAG's own task process builds it the same way (it needs the file's problems).
    monkeypatch.setenv(CONTEXT, "leviathan__invalid__broken")
    assert "leviathan__invalid__broken" in dag_factory.build_all(targets_dir)


def test_the_file_name_need_not_be_the_target_id(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 5)
    (targets_dir / "prod-alpha.yaml").write_text("target_id: alpha\ntarget_repo_url: /srv/a.git\n", encoding="utf-8")
    (targets_dir / "alpha2.yaml").write_text("target_id: alpha2\ntarget_repo_url: /srv/a2.git\n", encoding="utf-8")
    monkeypatch.setenv(CONTEXT, "leviathan__alpha")
    assert list(dag_factory.build_all(targets_dir)) == ["leviathan__alpha"]
    assert loads == ["prod-alpha.yaml"]  # only the file holding the id as a word (not alpha2's)


@pytest.mark.parametrize("claim", ["target_id: t03", 'target_id: "t\\x303"'])
def test_a_duplicate_target_id_refuses_the_dag_in_the_task_process_too(targets_dir, monkeypatch, claim):
    _targets(targets_dir, 5)
    (targets_dir / "zz-copy.yaml").write_text(f"{claim}\ntarget_repo_url: /srv/other.git\n", encoding="utf-8")
    monkeypatch.delenv(CONTEXT, raising=False)
    assert "leviathan__t03" not in dag_factory.build_all(targets_dir)
    monkeypatch.setenv(CONTEXT, "leviathan__t03")
    assert dag_factory.build_all(targets_dir) == {}  # the task fails "Dag not found", as Airflow's would


def test_the_task_runners_bundle_dagbag_gets_only_the_named_dag(targets_dir):
    """The real parse a task runner does (BundleDagBag of the thin DAG file), in a fresh process."""
    _targets(targets_dir, 50)
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import BundleDagBag\n"
        "bag = BundleDagBag(dag_folder=sys.argv[1], safe_mode=False, load_op_links=False,\n"
        "                   bundle_path=sys.argv[2], bundle_name='dags-folder')\n"
        "print(json.dumps({'dags': sorted(bag.dags), 'errors': list(bag.import_errors)}))\n"
    )
    env_file = ROOT / "dags" / "leviathan_targets.py"
    env = {**os.environ, CONTEXT: "leviathan__t42", "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "plan"}
    out = subprocess.run([sys.executable, "-c", code, str(env_file), str(ROOT / "dags")], env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"dags": ["leviathan__t42"], "errors": []}


def test_a_short_id_does_not_make_every_file_a_candidate(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 20)
    (targets_dir / "a.yaml").write_text("target_id: a\ntarget_repo_url: /srv/a.git\n", encoding="utf-8")
    monkeypatch.setenv(CONTEXT, "leviathan__a")
    assert list(dag_factory.build_all(targets_dir)) == ["leviathan__a"]
    assert loads == ["a.yaml"]  # "a" occurs in every file, but as a word only in its own
