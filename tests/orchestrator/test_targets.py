"""Where the target files are: ``$LEVIATHAN_TARGETS_DIR``, else ``[leviathan] targets_dir``, no default.

A relative ``targets_dir`` is taken from the DAG file's folder (MWAA and Composer ship the targets in the
DAGs bucket next to it); a folder that is not set, missing or unreadable is one error DAG that names the
setting to fix and where it looked, never an import error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from leviathan_lib.core.config import TARGETS_DIR_ENV, TargetsDirError, locate_targets_dir
from leviathan_lib.core.names import TASK_CONFIG_ERROR, dag_id
from leviathan_lib.demo import create_demo_target
from leviathan_lib.orchestrator.dags import TARGETS_DIR_ERROR_DAG_ID

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "leviathan_targets.py"


def test_the_environment_wins_over_airflow_cfg_and_relative_paths_start_at_the_base(tmp_path):
    assert locate_targets_dir("/srv/env", "/srv/cfg", None).path == Path("/srv/env")
    chosen = locate_targets_dir("  ", "targets", tmp_path)
    assert (chosen.path, chosen.setting) == (tmp_path / "targets", "[leviathan] targets_dir")
    with pytest.raises(TargetsDirError, match=r"relative path needs the DAG folder"):
        locate_targets_dir("", "targets", None)


def test_no_setting_is_an_error_naming_every_setting():
    with pytest.raises(TargetsDirError) as caught:
        locate_targets_dir("", "", Path("/dags"))
    assert caught.value.code == "targets_dir_invalid"
    for setting in ("[leviathan] targets_dir", "AIRFLOW__LEVIATHAN__TARGETS_DIR", TARGETS_DIR_ENV):
        assert setting in caught.value.message


def test_a_file_or_a_missing_folder_is_refused_with_the_path(tmp_path):
    (tmp_path / "file.yaml").write_text("x", encoding="utf-8")
    for bad, found in ((tmp_path / "file.yaml", "not a folder"), (tmp_path / "gone", "no such folder")):
        with pytest.raises(TargetsDirError, match=rf"{TARGETS_DIR_ENV} is '{bad}': {found}; set {TARGETS_DIR_ENV}"):
            locate_targets_dir(str(bad), "", None).check()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    with pytest.raises(TargetsDirError, match="cannot be read"):
        locate_targets_dir(str(locked), "", None).check()


def _dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


@pytest.mark.parametrize("setting", ["missing", "unset"])
def test_a_wrong_targets_folder_is_one_error_dag_saying_what_to_fix(tmp_path, monkeypatch, setting):
    if setting == "missing":
        monkeypatch.setenv(TARGETS_DIR_ENV, str(tmp_path / "nowhere"))
        expected = [f"{TARGETS_DIR_ENV} is '{tmp_path / 'nowhere'}': no such folder"]
    else:
        monkeypatch.delenv(TARGETS_DIR_ENV)
        monkeypatch.setenv("AIRFLOW__LEVIATHAN__TARGETS_DIR", "")
        expected = ["the targets folder is not set", "[leviathan] targets_dir"]
    dagbag = _dagbag(DAG_FILE)
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == [TARGETS_DIR_ERROR_DAG_ID]
    dag = dagbag.dags[TARGETS_DIR_ERROR_DAG_ID]
    assert [t.task_id for t in dag.tasks] == [TASK_CONFIG_ERROR] and dag.schedule is None
    assert all(text in dag.doc_md for text in expected), dag.doc_md
    assert "config-error" in dag.tags and dag.description


def test_a_relative_targets_dir_is_read_next_to_the_dag_file(tmp_path, monkeypatch):
    """The MWAA / Composer layout: the one-line DAG file and targets/ side by side in the DAGs folder."""
    dags = tmp_path / "bucket" / "dags"
    dags.mkdir(parents=True)
    shutil.copy(DAG_FILE, dags / "leviathan.py")
    create_demo_target(tmp_path, target_id="beside", targets_dir=dags / "targets")
    monkeypatch.delenv(TARGETS_DIR_ENV)
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__TARGETS_DIR", "targets")
    monkeypatch.chdir(tmp_path)  # not the DAG file's folder: the path is not taken from the working directory
    dagbag = _dagbag(dags)
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == [dag_id("beside")]


def test_the_dag_file_is_one_import_and_one_call():
    code = [line for line in DAG_FILE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert code == ["from leviathan_lib.orchestrator.dags import targets_dags", "targets_dags(globals())"]
