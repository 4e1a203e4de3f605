"""End to end on a distributed executor: CeleryExecutor, Redis broker, PostgreSQL, two Celery workers.

The two workers stand for two machines: each has its own AIRFLOW_HOME, LEVIATHAN_STATE_DIR (mirrors,
scratch), TMPDIR, targets folder, DAG folder copy and working directory; they share only the metadata
DB, the broker and the target's remote (the local forge's bare repository). A cluster policy (the
test's ``airflow_local_settings.py``) routes ``plan`` to machine A's queue and ``run_worker`` to
machine B's, so one cycle's tasks cannot pass files to each other. ``open_pull_request`` goes to a
queue both serve, so when the machine running it dies, Airflow retries it on the other.

Bad input: a machine SIGKILLed (its whole process tree) after the PR exists, and the metadata DB
refusing and dropping every connection (``ALTER DATABASE … ALLOW_CONNECTIONS false`` and
``pg_terminate_backend`` on this run's database only, never the shared server) at the same point. A
test-only hook pauses ``open_pull_request`` right after ``create_pr`` so the failure lands there, the
worst moment: the PR exists and Airflow does not know yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from leviathan_lib.core import names
from leviathan_lib.cycle.repo_reader import PINNED_REF_PREFIX
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import CycleRecord
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import switch_on_in
from tests.fake_github import FakeGithub, connection_env
from tests.metadata_db import PostgresDatabase, backend

pytestmark = pytest.mark.scheduler

ROOT = Path(__file__).resolve().parents[2]
REDIS = ("127.0.0.1", 6379)
#: A cron whose previous fire (29 Feb 2024) is before the DAGs' start date: unpausing starts no run.
NEVER = "0 0 29 2 *"
DELIVER, KILL, DB_LOSS, GITHUB = "celery_deliver", "celery_kill", "celery_db_loss", "celery_github"
GH_TOKEN = "ghp_" + "CelerySecret0123456789abcdefABCDEFgh"  # built: no literal token in the repository

LOCAL_SETTINGS = '''
"""Test-only Airflow cluster policy and hooks (tests/e2e/test_celery.py)."""
import os
import time
from datetime import timedelta
from pathlib import Path

QUEUES = {QUEUES!r}


def task_policy(task):
    task.queue = QUEUES.get(task.task_id, QUEUES["*"])
    task.retry_delay = timedelta(seconds=1)


def machine_hostname():
    return os.environ.get("LEVIATHAN_TEST_MACHINE", "control")


def _pause_after_pr():
    """Hang once right after the PR exists, on the targets named in LEVIATHAN_TEST_PAUSE, until the test
    writes ``<target>.resume`` next to the ``<target>.paused`` marker (or kills this machine)."""
    from leviathan_lib.forge.local import LocalForge

    create_pr = LocalForge.create_pr
    folder = Path(os.environ["LEVIATHAN_TEST_PAUSE_DIR"])

    def paused(self, **kwargs):
        pr = create_pr(self, **kwargs)
        target = Path(self.path).name.removesuffix(".git")
        if target in os.environ["LEVIATHAN_TEST_PAUSE"].split(","):
            try:
                fd = os.open(folder / f"{{target}}.paused", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return pr
            os.write(fd, f"{{machine_hostname()}} {{os.getpid()}}".encode())
            os.close(fd)
            deadline = time.monotonic() + 300
            while not (folder / f"{{target}}.resume").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        return pr

    LocalForge.create_pr = paused


if os.environ.get("LEVIATHAN_TEST_PAUSE"):
    _pause_after_pr()
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(what: str, probe: Callable[[], Any], timeout: float, check: Callable[[], None]) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        check()
        try:
            value = probe()
            if value:
                return value
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))


@dataclass
class Stack:
    """The Airflow processes; each in its own process group, killed as a tree at teardown."""

    base: Path
    control_env: dict[str, str]
    machine_env: dict[str, dict[str, str]]
    api: str
    database: PostgresDatabase
    queues: dict[str, list[str]]
    github: FakeGithub
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    specs: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.specs[name] = (argv, env, cwd)
        log = open(self.base / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "airflow", *argv], env=env, cwd=cwd,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def start_worker(self, machine: str) -> None:
        self.start(f"worker-{machine}", ["celery", "worker", "-q", ",".join(self.queues[machine]), "-c", "1",
                                         "-H", f"{machine}@leviathan-test", "--skip-serve-logs",
                                         "--without-mingle", "--without-gossip"],
                   self.machine_env[machine], self.base / machine / "cwd")

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and not name.endswith("-killed"):
                raise AssertionError(f"airflow {name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def revive(self) -> None:
        """What a process supervisor does: start again whatever exited (the DB outage test allows that)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None and not name.endswith("-killed"):
                self.procs.pop(name)
                self.restarted.append(name)
                self.start(name, *self.specs[name])

    def log(self, name: str) -> str:
        return (self.base / "logs" / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """The whole tree (a task process has a process group of its own), as a machine dying would."""
        proc = self.procs.pop(name)
        self.procs[f"{name}-killed"] = proc
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        proc.wait(timeout=30)
        psutil.wait_procs(tree, timeout=30)

    def stop(self) -> None:
        alive = {n: p for n, p in self.procs.items() if p.poll() is None}
        for proc in alive.values():
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, proc in alive.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.procs[name] = proc
                self.kill(name)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.api + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - loopback only
            return json.loads(response.read() or b"null")

    def trigger(self, dag_id: str) -> str:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run_id: str = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
        return run_id

    def finished(self, dag_id: str, run_id: str, timeout: float = 150,
                 check: Callable[[], None] | None = None) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return _wait(f"run {run_id} of {dag_id}", done, timeout, check or self.check)  # type: ignore[no-any-return]

    def instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        listed = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti for ti in listed}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        return sorted(self.call("GET", path)["task_instances"], key=lambda t: t["try_number"])

    def record(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run's cycle record: its one event on the evidence asset."""
        found = [e["extra"] for e in self.evidence_events(dag_id) if e["source_run_id"] == run_id]
        assert len(found) == 1, f"run {run_id} left {len(found)} cycle records"
        return found[0]  # type: ignore[no-any-return]

    def evidence_events(self, dag_id: str) -> list[dict[str, Any]]:
        events = self.call("GET", f"/api/v2/assets/events?source_dag_id={dag_id}&limit=100")["asset_events"]
        return [e for e in events if e["source_dag_id"] == dag_id]


def _redis_or_fail() -> None:
    try:
        with socket.create_connection(REDIS, timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise OSError("no PONG")
    except OSError as exc:
        pytest.fail(f"Redis does not answer on {REDIS[0]}:{REDIS[1]} ({exc}): scripts/redis.sh installs and "
                    "starts it (scripts/test.sh runs it)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    if backend() != "postgresql":
        pytest.skip("the CeleryExecutor needs the PostgreSQL metadata DB (LEVIATHAN_TEST_DB=postgresql)")
    _redis_or_fail()
    base = tmp_path_factory.mktemp("celery")
    (base / "logs").mkdir()
    run = secrets.token_hex(4)
    queue_a, queue_b, shared = f"machine-a-{run}", f"machine-b-{run}", f"shared-{run}"
    queues = {names.TASK_PLAN: queue_a, names.TASK_RUN_WORKER: queue_b, names.TASK_OPEN_PULL_REQUEST: shared,
              names.TASK_RECORD_EVIDENCE: shared, "*": shared}
    hooks = base / "hooks"
    hooks.mkdir()
    (hooks / "airflow_local_settings.py").write_text(LOCAL_SETTINGS.replace("{QUEUES!r}", repr(queues))
                                                     .replace("{{", "{").replace("}}", "}"))
    targets = base / "targets"
    for target_id in (DELIVER, KILL, DB_LOSS, GITHUB):
        create_demo_target(base, target_id=target_id, schedule=NEVER, timeout=120, targets_dir=targets)
    github = FakeGithub(GH_TOKEN)  # a forge whose repository only a credential reaches: plan's mirror is needed
    github.add_repo("acme/widgets", base / "repos" / f"{GITHUB}.git")
    github_file = targets / f"{GITHUB}.yaml"
    github_file.write_text(github_file.read_text()
                           .replace(f"target_repo_url: {base / 'repos' / f'{GITHUB}.git'}",
                                    f"target_repo_url: {github.repo_url('acme/widgets')}")
                           .replace("forge: local", "forge: github\nforge_conn_id: github_test"))
    database = PostgresDatabase.for_this_run().derived("celery")
    database.create()
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    common = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEVIATHAN"))}
    common.update({
        **database.airflow_env(),
        "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ["AIRFLOW__API_AUTH__JWT_SECRET"],
        "AIRFLOW__API__SECRET_KEY": os.environ["AIRFLOW__API__SECRET_KEY"],
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW_CONN_GITHUB_TEST": connection_env(github),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_local_settings.machine_hostname",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"leviathan-test-{run}-",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database.airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        # A dead machine's task is noticed in seconds, not the default five minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "PYTHONPATH": os.pathsep.join([str(hooks), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    machines: dict[str, dict[str, str]] = {}
    for machine in ("control", "a", "b"):
        home = base / machine
        for sub in ("airflow", "state", "tmp", "cwd", "checkout/dags"):
            (home / sub).mkdir(parents=True)
        shutil.copy(ROOT / "dags" / "leviathan_targets.py", home / "checkout" / "dags")
        shutil.copytree(targets, home / "targets")  # each machine deploys the same target files
        machines[machine] = {**common, "AIRFLOW_HOME": str(home / "airflow"), "LEVIATHAN_HOME": str(home / "checkout"),
                             "LEVIATHAN_TARGETS_DIR": str(home / "targets"),
                             "LEVIATHAN_STATE_DIR": str(home / "state"), "TMPDIR": str(home / "tmp"),
                             "LEVIATHAN_TEST_MACHINE": machine, "LEVIATHAN_TEST_PAUSE": f"{KILL},{DB_LOSS}",
                             "LEVIATHAN_TEST_PAUSE_DIR": str(base)}
    migrated = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=machines["control"],
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-3000:]
    switch_on_in(machines["control"])  # a new metadata DB has no switch: off until an operator switches it on
    stack = Stack(base, machines["control"], machines, api, database,
                  {"a": [queue_a, shared], "b": [queue_b, shared]}, github)
    try:
        for component in ("api-server", "scheduler", "dag-processor"):
            stack.start(component, [component], machines["control"], base / "control" / "cwd")
        stack.start_worker("a")
        stack.start_worker("b")
        _wait("the API server", lambda: stack.call("GET", "/api/v2/monitor/health"), 180, stack.check)
        for target_id in (DELIVER, KILL, DB_LOSS, GITHUB):
            _wait(f"DAG of {target_id}", lambda t=target_id: stack.call("GET", f"/api/v2/dags/{names.dag_id(t)}"),
                  180, stack.check)
        yield stack
    finally:
        stack.stop()
        github.close()
        database.drop()


def _forge(stack: Stack, target_id: str) -> LocalForge:
    return LocalForge(stack.base / "repos" / f"{target_id}.git")


def test_cycles_on_two_workers_deliver_one_pr_then_skip_at_the_open_pr_limit(stack):
    dag_id = names.dag_id(DELIVER)
    first = stack.trigger(dag_id)
    assert stack.finished(dag_id, first)["state"] == "success", stack.instances(dag_id, first)
    tis = stack.instances(dag_id, first)
    # The cycle's tasks really ran on different machines: plan on A, the worker on B.
    assert tis[names.TASK_PLAN]["hostname"] == "a" and tis[names.TASK_RUN_WORKER]["hostname"] == "b"
    assert tis[names.TASK_OPEN_PULL_REQUEST]["hostname"] in ("a", "b")
    record = stack.record(dag_id, first)
    assert record["stopped_reason"] == "pr_opened" and record["attempt"]["pr_number"] == 1
    second = stack.trigger(dag_id)
    assert stack.finished(dag_id, second)["state"] == "success"
    skipped = stack.record(dag_id, second)
    assert skipped["reasons"] == ["open_pr_limit"] and skipped["attempt"] is None
    prs = _forge(stack, DELIVER).list_prs()
    assert [(p.number, p.head) for p in prs] == [(1, record["attempt"]["branch"])]
    assert len(stack.evidence_events(dag_id)) == 2  # one record per cycle
    # The worker's scratch lived on machine B only; the control plane ran no task.
    assert not any((stack.base / "control" / "state").rglob("leviathan-attempt-*"))
    assert not (stack.base / "control" / "state" / "mirrors").exists() or not any(
        (stack.base / "control" / "state" / "mirrors").iterdir())



def test_on_github_the_worker_machine_fetches_the_pinned_commit_itself(stack):
    """``plan`` fetched into machine A's mirror; ``run_worker`` on B cannot see it and fetches the pinned
    commit into B's own mirror, with the forge credential (the worker itself gets none)."""
    dag_id = names.dag_id(GITHUB)
    run_id = stack.trigger(dag_id)
    assert stack.finished(dag_id, run_id)["state"] == "success", stack.instances(dag_id, run_id)
    tis = stack.instances(dag_id, run_id)
    assert tis[names.TASK_PLAN]["hostname"] == "a" and tis[names.TASK_RUN_WORKER]["hostname"] == "b"
    record = stack.record(dag_id, run_id)
    assert record["stopped_reason"] == "pr_opened", record
    sha = record["commit_sha"]
    [mirror_b] = (stack.base / "b" / "state" / "mirrors").iterdir()
    assert run_git(["--git-dir", str(mirror_b), "rev-parse", PINNED_REF_PREFIX + sha]).stdout.strip() == sha
    [mirror_a] = (stack.base / "a" / "state" / "mirrors").iterdir()
    assert run_git(["--git-dir", str(mirror_a), "rev-parse", "refs/heads/main"]).stdout.strip() == sha
    assert [p["number"] for p in stack.github.repos["acme/widgets"].pulls] == [1]
    assert stack.github.errors == []

def test_a_machine_killed_after_opening_the_pr_is_retried_on_the_other_without_a_second_pr(stack):
    dag_id = names.dag_id(KILL)
    run_id = stack.trigger(dag_id)
    marker = stack.base / f"{KILL}.paused"
    machine = _wait("open_pull_request to pause after creating the PR", lambda: marker.read_text().split()[0],
                    150, stack.check)
    assert [p.number for p in _forge(stack, KILL).list_prs()] == [1]  # the PR exists; the task has not ended
    stack.kill(f"worker-{machine}")
    assert stack.finished(dag_id, run_id, timeout=180)["state"] == "success"
    tries = stack.tries(dag_id, run_id, names.TASK_OPEN_PULL_REQUEST)
    assert [t["try_number"] for t in tries] == [1, 2] and tries[0]["state"] == "failed"
    survivor = "b" if machine == "a" else "a"
    assert tries[0]["hostname"] == machine and tries[1]["hostname"] == survivor
    prs = _forge(stack, KILL).list_prs()
    assert [p.number for p in prs] == [1]
    record = stack.record(dag_id, run_id)
    assert record["stopped_reason"] == "pr_opened" and record["attempt"]["pr_number"] == 1
    assert len(stack.evidence_events(dag_id)) == 1
    stack.start_worker(machine)  # the machine comes back


def _admin(database: PostgresDatabase, *statements: str) -> None:
    """Run statements on the server's ``postgres`` database: the test DB's own connections are the ones cut."""
    import psycopg2

    conn = psycopg2.connect(f"postgresql://{database.server}/postgres", connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, {"db": database.name})
    finally:
        conn.close()


def test_losing_the_metadata_db_mid_delivery_ends_in_a_retry_with_one_pr_and_one_whole_record(stack):
    """The metadata DB refuses every connection (and drops the open ones) right after the PR was created,
    while ``open_pull_request`` still has to report it; only this run's database, not the shared server."""
    dag_id = names.dag_id(DB_LOSS)
    run_id = stack.trigger(dag_id)
    marker = stack.base / f"{DB_LOSS}.paused"
    machine = _wait("open_pull_request to pause after creating the PR", lambda: marker.read_text().split()[0],
                    150, stack.check)
    name = stack.database.name
    _admin(stack.database, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
           "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(db)s")
    (stack.base / f"{DB_LOSS}.resume").write_text("")
    time.sleep(15)  # the task reports into an API server that has no database (it fails within ~8 s)
    _admin(stack.database, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    run = stack.finished(dag_id, run_id, timeout=240, check=stack.revive)
    assert run["state"] == "success"
    # The try that lost the DB failed with the API server's reason, and Airflow retried it (on either machine).
    tries = stack.tries(dag_id, run_id, names.TASK_OPEN_PULL_REQUEST)
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")]
    assert tries[0]["hostname"] == machine
    log = _task_log(stack.base / machine, dag_id, names.TASK_OPEN_PULL_REQUEST, 1)
    assert "API_SERVER_ERROR" in log and "Database error" in log
    # One PR, and one whole evidence record that names it.
    assert [p.number for p in _forge(stack, DB_LOSS).list_prs()] == [1]
    assert len(stack.evidence_events(dag_id)) == 1
    record = CycleRecord.model_validate(stack.record(dag_id, run_id))
    assert record.stopped_reason == "pr_opened" and record.attempt is not None and record.attempt.pr_number == 1


def _task_log(machine_dir: Path, dag_id: str, task_id: str, attempt: int) -> str:
    """A task try's log, from the disk of the machine that ran it (the workers serve no logs here)."""
    root = machine_dir / "airflow" / "logs" / f"dag_id={dag_id}"
    [path] = root.glob(f"run_id=*/task_id={task_id}/attempt={attempt}.log")
    return path.read_text(errors="replace")
