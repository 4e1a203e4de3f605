"""``leviathan demo``: real Airflow (SQLite, scheduler, dag-processor, API server) on the demo target.

Everything lives under one folder (default ``.demo/`` in the checkout), so running it again reuses the
same metadata DB, repository and pull requests. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leviathan_lib.control.airflow_api import DEFAULT_CONN_ID
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.names import dag_id, dag_target_id, evidence_asset_uri
from leviathan_lib.core.reasons import explain
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.health import health_report
from leviathan_lib.forge import local_webhooks

DAG_ID = dag_id("demo")
COMPONENTS = ("api-server", "scheduler", "dag-processor")
#: The demo adds a triggerer. It runs no Leviathan task (approval gates wait in ``awaiting_input`` on Airflow
#: 3.3, without a trigger), but the UI's health badge shows a missing one red (docs/quickstart.md).
DEMO_COMPONENTS = (*COMPONENTS, "triggerer")
#: The triggerer's log server would hold port 8794 and add a process; its logs are local files here anyway.
_ARGS = {"triggerer": ["--skip-serve-logs"]}
DEFAULT_PORT = 8080
DEFAULT_SCHEDULE = "*/5 * * * *"
BACKLOG = TargetConfig.model_fields["backlog_path"].default  # the demo target's


class DemoError(CodedError):
    """A demo step failed; the message says which and where to look."""

    CODE = "demo_failed"


def checkout() -> Path:
    """The source checkout the demo runs Airflow from (its ``airflow.cfg`` and ``dags/``).

    ``$LEVIATHAN_HOME`` (scripts/demo.sh sets it), else the current folder: the installed package holds
    no checkout, and the demo needs one (docs/install.md installs into an existing Airflow instead).
    """
    return Path(os.environ.get("LEVIATHAN_HOME") or Path.cwd()).resolve()


def _checked_checkout() -> Path | None:
    root = checkout()
    if (root / "airflow.cfg").is_file() and (root / "dags").is_dir():
        return root
    print(f"error: {root} is not a Leviathan checkout (no airflow.cfg and dags/): run the demo from one, "
          "or set LEVIATHAN_HOME to it", file=sys.stderr)
    return None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run the embedded demo on real Airflow (SQLite, local forge)")
    parser.add_argument("--dir", type=Path, default=checkout() / ".demo",
                        help="demo folder (default: .demo/ of the checkout)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"API server port (default: $LEVIATHAN_DEMO_PORT, else {DEFAULT_PORT})")
    parser.add_argument("--reset", action="store_true", help="delete the demo folder first")
    parser.add_argument("--exit", action="store_true", help="stop Airflow after the first cycle instead of waiting")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the cycle")
    parser.set_defaults(func=run)
    sub = parser.add_subparsers(dest="demo_command", metavar="{env}")
    env = sub.add_parser(
        "env", help="print the demo's environment as shell exports",
        description='Print export lines (absolute paths, the demo\'s generated keys) so that the airflow and '
                    'leviathan CLIs see the demo\'s Airflow: eval "$(.venv/bin/leviathan demo env)".',
    )
    # SUPPRESS: given before or after ``env``, --dir and --port mean the same (the demo's defaults otherwise).
    env.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help="demo folder (default: .demo/)")
    env.add_argument("--port", type=int, default=argparse.SUPPRESS,
                     help="the demo's API server port (default: the port it last started on)")
    env.set_defaults(func=print_env)


def _secrets(demo: Path) -> dict[str, str]:
    """The demo's Airflow keys, generated on first use into ``secrets.env`` (never committed, mode 0600)."""
    secrets_file = demo / "secrets.env"
    if not secrets_file.exists():
        from cryptography.fernet import Fernet

        demo.mkdir(parents=True, exist_ok=True)
        secrets_file.write_text(
            f"AIRFLOW__API_AUTH__JWT_SECRET={secrets.token_urlsafe(64)}\n"  # HS512: at least 64 bytes
            f"AIRFLOW__API__SECRET_KEY={secrets.token_urlsafe(32)}\n"
            f"AIRFLOW__CORE__FERNET_KEY={Fernet.generate_key().decode()}\n",
            encoding="utf-8",
        )
        secrets_file.chmod(0o600)
    values = {}
    for line in secrets_file.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    if local_webhooks.SECRET_ENV not in values:  # a demo folder from before the demo took webhooks
        values[local_webhooks.SECRET_ENV] = secrets.token_urlsafe(32)
        with secrets_file.open("a", encoding="utf-8") as out:
            out.write(f"{local_webhooks.SECRET_ENV}={values[local_webhooks.SECRET_ENV]}\n")
    return values


def _webhook_variables(base_url: str, secret: str) -> dict[str, str]:
    """The local forge posts its deliveries to the demo's receiver, which verifies them with the same secret
    (the connection ``leviathan_webhook_github``, from the environment)."""
    return {local_webhooks.URL_ENV: f"{base_url}/leviathan/webhooks/github",
            "AIRFLOW_CONN_LEVIATHAN_WEBHOOK_GITHUB": json.dumps({"conn_type": "generic", "password": secret})}


def _default_port() -> int:
    return int(os.environ.get("LEVIATHAN_DEMO_PORT") or DEFAULT_PORT)


def record_port(demo: Path, port: int) -> None:
    """Note the port the demo starts on in its folder, so that ``demo env`` describes this demo."""
    (demo / "port").write_text(f"{port}\n", encoding="utf-8")


def recorded_port(demo: Path) -> int | None:
    """The port the demo in ``demo`` last started on; None before its first start."""
    try:
        return int((demo / "port").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def demo_variables(demo: Path, port: int) -> dict[str, str]:
    """What the demo sets on top of the caller's environment (``demo`` must be absolute)."""
    base_url = f"http://127.0.0.1:{port}"
    keys = _secrets(demo)
    return {
        **keys,
        **_webhook_variables(base_url, keys[local_webhooks.SECRET_ENV]),
        "AIRFLOW_HOME": str(demo / "airflow"),
        "AIRFLOW_CONFIG": str(checkout() / "airflow.cfg"),
        "LEVIATHAN_HOME": str(checkout()),
        "LEVIATHAN_TARGETS_DIR": str(demo / "targets"),
        "LEVIATHAN_STATE_DIR": str(demo / "state"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
    }


def _environment(demo: Path, port: int) -> dict[str, str]:
    """The demo processes' environment: the caller's minus its ``AIRFLOW__*`` settings, plus the demo's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(demo_variables(demo, port))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # Python 3.11's -P: no working folder on sys.path. Started from a checkout that holds a build's
    # leviathan.egg-info (`pip wheel .`), Airflow would find the package twice and report its plugin
    # as "already registered" (a plugin import error in the UI).
    env["PYTHONSAFEPATH"] = "1"
    return env


def print_env(args: argparse.Namespace) -> int:
    """``leviathan demo env``: the demo's environment for a shell, so ``airflow`` and ``leviathan`` see it."""
    if _checked_checkout() is None:
        return 2
    demo = args.dir.resolve()
    port = args.port or recorded_port(demo) or _default_port()
    variables = demo_variables(demo, port)
    # The demo drops the caller's own AIRFLOW__* settings; so does the shell that evals this.
    for key in sorted(k for k in os.environ if k.startswith("AIRFLOW__") and k not in variables):
        print(f"unset {key}")
    for key, value in variables.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Stack:
    """The Airflow processes, each in its own process group so a stop reaches their children too."""

    def __init__(self, env: dict[str, str], logs: Path, components: tuple[str, ...] = COMPONENTS):
        self.env, self.logs, self.components = env, logs, components
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in self.components:
            with open(self.logs / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", name, *_ARGS.get(name, [])], env=self.env, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise DemoError(f"airflow {name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class Api:
    """Minimal client for the Airflow REST API (the same calls an operator's tooling makes)."""

    def __init__(self, base: str):
        self.base, self.token = base, None

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return json.loads(response.read() or b"null")

    def cycle_record(self, dag: str, run_id: str) -> dict[str, Any]:
        """A finished run's cycle record: its event on the target's evidence asset (``plan`` wrote it on a
        skip, ``record_evidence`` after an attempt, an approval gate on a rejection)."""
        query = urllib.parse.urlencode({"source_dag_id": dag, "source_run_id": run_id, "limit": 100})
        uri = evidence_asset_uri(dag_target_id(dag) or "")
        found = [e["extra"] for e in self.call("GET", f"/api/v2/assets/events?{query}")["asset_events"]
                 if e["uri"] == uri]
        if len(found) != 1:
            raise DemoError(f"run {run_id} of {dag} left {len(found)} cycle records, expected one")
        return found[0]

    def login(self, username: str, password: str) -> None:
        self.token = self.call("POST", "/auth/token", {"username": username, "password": password})["access_token"]


def _wait(what: str, probe, timeout: float, stack: Stack) -> Any:
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        stack.check()
        try:
            value = probe()
            if value:
                return value
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            last_error = exc
        time.sleep(1)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last_error})" if last_error else ""))


def _api_connection(api: Api, password: str) -> None:
    """The connection ``leviathan stop`` reaches Airflow's API with: the demo's admin (local demo only; a
    deployment gives it an on-call user of its own, docs/operations.md)."""
    conn = {"connection_id": DEFAULT_CONN_ID, "conn_type": "http", "host": api.base, "login": "admin",
            "password": password}
    try:
        api.call("POST", "/api/v2/connections", conn)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: it exists (a restart); its password may be another start's
            raise
        api.call("PATCH", f"/api/v2/connections/{DEFAULT_CONN_ID}", conn)


def _password(airflow_home: Path) -> str:
    data = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
    return data["admin"]


def summarize(record: dict[str, Any]) -> list[str]:
    """The demo's report: what was read, what was decided and why, what was opened."""
    commit = (record.get("commit_sha") or "")[:12]
    lines = [f"Read {record.get('branch')}@{commit}. Decision: {record['decision']} "
             f"(stopped: {record['stopped_reason']})"]
    for check in record.get("checks", []):
        lines.append(f"  check {check['name']:<16} {'pass' if check['passed'] else 'FAIL'}  {check['detail']}")
    attempt = record.get("attempt") or {}
    if attempt.get("pr_number"):
        paths = [p for p in attempt["changed_paths"] if p != BACKLOG]  # the delivery's own status edit
        lines.append(f"Opened PR #{attempt['pr_number']} for task {attempt['task_id']} on {attempt['branch']}: "
                     f"{', '.join(paths)} (+ backlog status edit)")
    elif attempt:
        lines.append(f"Attempt on {attempt['task_id']} ended {attempt.get('outcome')}: {attempt.get('error_message')}")
    lines += _check_lines(attempt)
    for verdict in record.get("tasks", []):
        if verdict["eligible"]:
            if verdict["id"] == record.get("selected_task"):
                lines.append(f"  task {verdict['id']}: <- selected")
            else:
                lines.append(f"  task {verdict['id']}: eligible")
        else:
            why = "; ".join(explain(r) for r in verdict["reasons"])
            lines.append(f"  task {verdict['id']}: skipped: {', '.join(verdict['reasons'])} ({why})")
    if record["stopped_reason"] == "open_pr_limit":
        lines.append("The previous run's PR is still open (max_open_prs: 1): merge or close it to let the next "
                     "task through.")
    return lines


def _check_lines(attempt: dict[str, Any]) -> list[str]:
    """The repository's own checks of the attempt: each run, and the output of one that failed."""
    lines = []
    for run in attempt.get("checks") or []:
        where = "pinned commit" if run["phase"] == "base" else "the change"
        status = "pass" if run["passed"] else "FAIL"
        cached = " (cached)" if run.get("cached") else ""
        lines.append(f"  check {run['name']} on {where}: {status}{cached} (exit {run['exit_code']}, "
                     f"{run['duration_seconds']:g}s)")
        if not run["passed"]:
            tail = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", run.get("output_tail") or "")  # no terminal escapes
            lines += [f"    | {line}" for line in tail.splitlines()[-10:]]
    return lines


def _switch_on_first_time(api: Api) -> None:
    """A new demo switches autonomy on through Spider, as an admin (a missing switch is off: fail closed);
    a demo whose switch someone set keeps it as it is."""
    state = api.call("GET", "/leviathan/autonomy")["global"]
    if not state["enabled"] and "not set" in state["detail"]:
        api.call("PUT", "/leviathan/autonomy", {"enabled": True, "reason": "the demo starts with autonomy on"})
        state = api.call("GET", "/leviathan/autonomy")["global"]
    print(f"Global autonomy switch: {'ON' if state['enabled'] else 'OFF'} ({state['detail']})", flush=True)


def _trigger(api: Api) -> str:
    """Unpause and trigger the demo DAG; the triggered run's id."""
    _switch_on_first_time(api)
    api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    run_id: str = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]
    print(f"Unpaused and triggered {DAG_ID}: run {run_id}", flush=True)
    return run_id


def _new_runs_finished(api: Api, since: datetime, run_id: str) -> list[dict[str, Any]] | None:
    """The runs queued since ``since``, once all of them (``run_id`` among them) finished; None before.

    Besides the triggered run, that is any scheduled run this start caused: the latest interval's on a
    first unpause, or a tick that passed while the demo was stopped (it may deliver before the triggered run).
    """
    runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=1000&order_by=run_after")["dag_runs"]
    new = [r for r in runs if r.get("queued_at") and datetime.fromisoformat(r["queued_at"]) >= since]
    done = all(r["state"] in ("success", "failed") for r in new) and any(r["dag_run_id"] == run_id for r in new)
    return new if done else None


def _report_runs(api: Api, runs: list[dict[str, Any]]) -> tuple[set[str], list[Any]]:
    """Print each run's evidence summary; the runs' states and the numbers of the PRs they opened."""
    states: set[str] = set()
    opened: list[Any] = []
    for dag_run in runs:
        record = api.cycle_record(DAG_ID, dag_run["dag_run_id"])
        states.add(dag_run["state"])
        opened += [(record.get("attempt") or {}).get("pr_number")] if (record.get("attempt") or {}).get(
            "pr_number") else []
        print(f"\n== {dag_run['run_type']} run {dag_run['dag_run_id']}: {dag_run['state']}")
        print("\n".join(summarize(record)))
    return states, opened


def _print_review(repo: Path, opened: list[Any]) -> None:
    print("\nReview the pull request as a human would:")
    print(f"  .venv/bin/leviathan forge list --repo {repo}")
    number = opened[-1] if opened else 1
    print(f"  .venv/bin/leviathan forge show --repo {repo} {number} --diff")
    print(f"  .venv/bin/leviathan forge merge --repo {repo} {number}  (next cycle: the next task)")


def _print_ui(api: Api, port: int, password: str) -> None:
    """Where to look, and what the UI's health badges and import-error lists will show there."""
    print(f"\nAirflow UI: http://127.0.0.1:{port}  (login: admin / {password})")
    print(f"  DAG: http://127.0.0.1:{port}/dags/{DAG_ID}")
    print(f"  Leviathan view (is it on, why not my task, what it did, stop it): "
          f"http://127.0.0.1:{port}/plugin/leviathan/leviathan/ui/targets/demo")
    print("\n".join(f"  {line}" for line in health_report(api.call)))


def run(args: argparse.Namespace) -> int:
    if _checked_checkout() is None:
        return 2
    demo: Path = args.dir.resolve()
    if args.reset and demo.exists():
        shutil.rmtree(demo)
    demo.mkdir(parents=True, exist_ok=True)
    port = args.port or _default_port()
    if not _port_free(port):
        print(f"error: port {port} on 127.0.0.1 is in use; pass --port N or set LEVIATHAN_DEMO_PORT",
              file=sys.stderr)
        return 2
    record_port(demo, port)
    env = _environment(demo, port)
    target_file = create_demo_target(demo, target_id="demo", webhooks=True,
                                     schedule=os.environ.get("LEVIATHAN_DEMO_SCHEDULE") or DEFAULT_SCHEDULE)
    repo = demo / "repos" / "demo.git"
    local_webhooks.install_hook(repo)  # a human's `git push` to main reaches the demo in seconds, as on GitHub
    print(f"Demo target: {target_file} -> {repo}")
    print("Migrating the Airflow metadata DB (SQLite) ...", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack = Stack(env, demo / "logs", DEMO_COMPONENTS)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    since = datetime.now(UTC)  # every run queued from here on is this start's
    try:
        stack.start()
        print(f"Started Airflow {', '.join(DEMO_COMPONENTS)} (logs in {demo / 'logs'})", flush=True)
        api = Api(f"http://127.0.0.1:{port}")
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, stack)
        airflow_home = Path(env["AIRFLOW_HOME"])
        password = _wait("the admin password", lambda: _password(airflow_home), 60, stack)
        api.login("admin", password)
        _api_connection(api, password)
        _wait(f"DAG {DAG_ID} to be parsed", lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}"), 180, stack)
        run_id = _trigger(api)
        runs = _wait(f"run {run_id} to finish", lambda: _new_runs_finished(api, since, run_id), args.timeout, stack)
        states, opened = _report_runs(api, runs)
        _print_review(repo, opened)
        _print_ui(api, port, password)
        if args.exit:
            return 0 if states == {"success"} else 1
        print("\nAirflow keeps running (the DAG runs every 5 minutes, and seconds after a merge, close, review, "
              "comment or status made with `leviathan forge`). Press Ctrl-C to stop everything.", flush=True)
        while True:
            stack.check()
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nStopping Airflow ...", file=sys.stderr)
        return 0
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        stack.stop()
