"""Helpers for tests that drive real Airflow: build a target, run a cycle with ``dag.test()``, read XComs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from leviathan_lib.core import names
from leviathan_lib.core.config import load_target
from leviathan_lib.git.runner import run_git


def run_cycle(target_file: Path):
    """Run one real cycle of the target's DAG in-process; return (dag_run, task states)."""
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    dag = build_target_dag(load_target(target_file), target_file)
    dag_run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return dag_run, states


def xcom(dag_run, task_id: str, key: str = names.XCOM_RETURN_VALUE) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        ).first()
        return XComModel.deserialize_value(row) if row else None


def evidence_record(dag_run) -> Any:
    """The run's cycle record: its event on the target's evidence asset (of ``plan`` on a skip, of
    ``record_evidence`` after an attempt, of an approval gate on a rejection), None when it left none."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = names.evidence_asset_uri(names.dag_target_id(dag_run.dag_id) or "")
    with create_session() as session:  # newest first: a cleared run that ran again records again
        return session.scalars(
            select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id,
                   AssetModel.uri == uri).order_by(AssetEvent.timestamp.desc(), AssetEvent.id.desc()).limit(1)
        ).first()


def commit_file(bare: Path, work: Path, path: str, text: str | None, message: str) -> None:
    """A human commits to the target's main branch (``text=None`` deletes the file)."""
    if not work.exists():
        run_git(["clone", "--quiet", str(bare), str(work)])
    run_git(["pull", "--quiet", "--ff-only"], cwd=work)
    target = work / path
    if text is None:
        target.unlink()
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    run_git(["add", "-A"], cwd=work)
    run_git(["commit", "--quiet", "-m", message], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=work)


def human_push(bare: Path, work: Path, branch: str, path: str, text: str) -> str:
    """A human commits ``path`` on top of ``branch`` (a PR's branch) and pushes; returns the new tip."""
    if not work.exists():
        run_git(["clone", "--quiet", str(bare), str(work)])
    run_git(["fetch", "--quiet", "origin"], cwd=work)
    run_git(["checkout", "--quiet", "-B", branch, f"origin/{branch}"], cwd=work)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text, encoding="utf-8")
    run_git(["add", "-A"], cwd=work)
    run_git(["commit", "--quiet", "-m", f"reviewer edits {path}"], cwd=work)
    run_git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], cwd=work)
    return str(run_git(["rev-parse", "HEAD"], cwd=work).stdout.strip())


@contextmanager
def scheduler_heartbeat() -> Iterator[None]:
    """A scheduler that heartbeats now (a real Job row, as the scheduler writes it): Airflow itself is fine,
    so ``/leviathan/health`` judges the targets."""
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session

    with create_session() as session:
        job = Job(job_type="SchedulerJob")
        job.state = "running"
        session.add(job)
        session.flush()
        job_id = job.id
    try:
        yield
    finally:
        with create_session() as session:
            session.delete(session.get(Job, job_id))


def set_switch(on: bool) -> None:
    """Switch autonomy on or off globally the way an admin does (the Variable and its record): a missing
    switch is off, so the test session starts with it on and a test that changes it puts it back."""
    from leviathan_lib.control.switch import set_global

    set_global(on, by="tests", reason="test setup")


def switch_on_in(env: dict[str, str]) -> None:
    """Switch autonomy on in a stack of a test's own (its own metadata DB): ``leviathan resume``, as an operator."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "resume", "--reason", "test stack"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
