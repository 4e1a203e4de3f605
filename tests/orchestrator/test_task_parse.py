"""A task process builds only its own DAG from one target file: parse cost per task does not grow with targets.

Airflow's task runner parses the DAG file before every task with the parsing context naming the DAG
(``_AIRFLOW_PARSING_CONTEXT_DAG_ID``); the DAG processor parses it without. A task process reads one file
when its index of the folder (which file names which id) is trusted: same fingerprint, and written well
after the folder's newest change; otherwise it reads every file and writes the index again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leviathan_lib.core import names, target_scan
from leviathan_lib.orchestrator import dag_factory

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"


def _targets(directory: Path, n: int) -> None:
    for i in range(n):
        (directory / f"t{i:02d}.yaml").write_text(f"target_id: t{i:02d}\ntarget_repo_url: /srv/t{i:02d}.git\n",
                                                  encoding="utf-8")
    (directory / "broken.yaml").write_text("target_id: [unclosed\n", encoding="utf-8")


@pytest.fixture
def loads(monkeypatch, tmp_path) -> list[str]:
    """The target files build_all reads, in order; the task processes' index in a folder of the test's own,
    trusted as soon as it is written (the racy-change window is the next test's subject)."""
    seen: list[str] = []
    real = target_scan.read_target_file

    def counting(path, directory):
        seen.append(Path(path).name)
        return real(path, directory)

    monkeypatch.setattr(target_scan, "read_target_file", counting)
    monkeypatch.setattr(target_scan, "RACY_NS", 0)
    monkeypatch.setenv("LEVIATHAN_STATE_DIR", str(tmp_path / "state"))
    return seen


def _task_process(monkeypatch, targets_dir: Path, dag: str) -> dict:
    monkeypatch.setenv(CONTEXT, dag)
    return dag_factory.build_all(targets_dir)


def test_a_task_process_reads_one_of_fifty_target_files_once_it_has_an_index(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 50)
    assert list(_task_process(monkeypatch, targets_dir, "leviathan__t07")) == ["leviathan__t07"]
    assert len(loads) == 51  # no index yet: every file, once; the index is written
    loads.clear()
    dags = _task_process(monkeypatch, targets_dir, "leviathan__t07")
    assert list(dags) == ["leviathan__t07"] and loads == ["t07.yaml"]  # one file, no error DAG for broken.yaml
    assert dags["leviathan__t07"].task_dict["plan"].op_kwargs["config"]["target_repo_url"] == "/srv/t07.git"


def test_a_change_in_the_folder_or_too_close_to_the_index_is_read_again(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 5)
    _task_process(monkeypatch, targets_dir, "leviathan__t01")
    loads.clear()
    (targets_dir / "t01.yaml").write_text("target_id: t01\ntarget_repo_url: /srv/moved.git\n", encoding="utf-8")
    dags = _task_process(monkeypatch, targets_dir, "leviathan__t01")
    assert len(loads) == 6  # the fingerprint changed: every file again
    assert dags["leviathan__t01"].task_dict["plan"].op_kwargs["config"]["target_repo_url"] == "/srv/moved.git"
    monkeypatch.setattr(target_scan, "RACY_NS", 10**12)  # the folder changed "just" before the index was written
    loads.clear()
    _task_process(monkeypatch, targets_dir, "leviathan__t01")
    assert len(loads) == 6


def test_the_dag_processor_builds_every_dag_and_a_broken_files_dag(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 50)
    monkeypatch.delenv(CONTEXT, raising=False)
    dags = dag_factory.build_all(targets_dir)
    assert len(dags) == 51 and len(loads) == 51
    assert "config-error" in dags[names.dag_id("broken")].tags  # no readable id: the file name's
    # That DAG's own task process builds it the same way (it needs the file's problems).
    built = _task_process(monkeypatch, targets_dir, names.dag_id("broken"))
    assert list(built[names.dag_id("broken")].task_dict) == [names.TASK_CONFIG_ERROR, names.TASK_CYCLE_OUTCOME]


def test_the_file_name_need_not_be_the_target_id(targets_dir, monkeypatch, loads):
    _targets(targets_dir, 5)
    (targets_dir / "prod-alpha.yaml").write_text("target_id: alpha\ntarget_repo_url: /srv/a.git\n", encoding="utf-8")
    (targets_dir / "alpha2.yaml").write_text("target_id: alpha2\ntarget_repo_url: /srv/a2.git\n", encoding="utf-8")
    _task_process(monkeypatch, targets_dir, "leviathan__alpha")
    loads.clear()
    assert list(_task_process(monkeypatch, targets_dir, "leviathan__alpha")) == ["leviathan__alpha"]
    assert loads == ["prod-alpha.yaml"]


@pytest.mark.parametrize("claim", ["target_id: t03", 'target_id: "t\\x303"'])
def test_a_duplicate_target_id_fails_closed_in_the_task_process_too(targets_dir, monkeypatch, loads, claim):
    _targets(targets_dir, 5)
    _task_process(monkeypatch, targets_dir, "leviathan__t03")  # an index from before the copy
    (targets_dir / "zz-copy.yaml").write_text(f"{claim}\ntarget_repo_url: /srv/other.git\n", encoding="utf-8")
    for dag in (None, "leviathan__t03", "leviathan__t03"):  # the DAG processor, then a task process twice
        if dag is None:
            monkeypatch.delenv(CONTEXT, raising=False)
            built = dag_factory.build_all(targets_dir)
        else:
            built = _task_process(monkeypatch, targets_dir, dag)
        assert "config-error" in built["leviathan__t03"].tags, dag  # never the cycle: no plan task
        assert names.TASK_PLAN not in built["leviathan__t03"].task_dict


def test_the_task_runners_bundle_dagbag_gets_only_the_named_dag(targets_dir, tmp_path):
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
    env = {**os.environ, CONTEXT: "leviathan__t42", "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "plan",
           "LEVIATHAN_STATE_DIR": str(tmp_path / "state")}
    for _ in range(2):  # without an index, then with the one the first wrote (trusted or not: the same DAG)
        out = subprocess.run([sys.executable, "-c", code, str(env_file), str(ROOT / "dags")], env=env,
                             capture_output=True, text=True, check=True, timeout=120)
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"dags": ["leviathan__t42"], "errors": []}
    assert (tmp_path / "state" / "targets-index.json").is_file()
