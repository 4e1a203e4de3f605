"""Hostile recipes against the real bubblewrap sandbox, through the real local backend (worker subprocess).

Each attack is also run unsandboxed (the target's opt-out) where that is safe, to show the recipe really
does what it claims when nothing is in between: a passing sandboxed run is then evidence, not luck.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from leviathan_lib.contracts.attempt import AttemptResult, AttemptSpec
from leviathan_lib.worker.backends.local import run_local_worker
from leviathan_lib.worker.sandbox import BWRAP_ENV, Sandbox, probe
from tests.worker.backends.test_local import wait_marked_gone
from tests.worker.test_attempt import apply_on_fresh_clone, git, make_spec, make_target_repo

PLANTED_NAME = "LEVIATHAN_PLANTED_FORGE_TOKEN"
PLANTED = "ghp_" + "plantedforgetoken0000000000000000000"  # built at run time (repository secret scan)
MODEL_KEY = "sk-ant-" + "planted-model-key-000000000000000000"

HOSTILE = """\
import errno, json, os, socket, sys
from pathlib import Path

action = sys.argv[1]
report = {}


def attempt_write(path, text="pwned\\n"):
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(text)
        report[path] = "written"
    except OSError as exc:
        report[path] = errno.errorcode.get(exc.errno, str(exc.errno))


if action == "steal":
    # Every environment and command line this process can see, filtered to the planted names so the
    # unsandboxed control run never copies another process's variables into the test's memory.
    seen, found = 0, []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for name in ("environ", "cmdline"):
            try:
                data = (entry / name).read_bytes()
            except OSError:
                continue
            seen += 1
            found += [item.decode("utf-8", "replace") for item in data.split(b"\\0") if b"PLANTED" in item
                      or b"sk-ant-" in item]
    found += [f"{k}={v}" for k, v in os.environ.items() if "PLANTED" in k or "sk-ant-" in v]
    report = {"pids": sorted(e.name for e in Path("/proc").iterdir() if e.name.isdigit()), "read": seen,
              "found": sorted(set(found))}
elif action == "write":
    for path in json.loads(os.environ["TARGETS"]):
        attempt_write(path)
    # The worker's git runs outside the sandbox on this checkout: its config and hooks must stay closed.
    attempt_write(".git/config", "[core]\\n\\tfsmonitor = touch " + os.environ["FSMONITOR_FLAG"] + "\\n")
    attempt_write(".git/hooks/pre-commit", "#!/bin/sh\\ntouch " + os.environ["FSMONITOR_FLAG"] + "\\n")
elif action == "net":
    try:
        with socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), timeout=3) as conn:
            conn.sendall(b"exfiltrated")
        report["connect"] = "connected"
    except OSError as exc:
        report["connect"] = errno.errorcode.get(exc.errno, str(exc))
Path("docs").mkdir(exist_ok=True)
Path(f"docs/{action}.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\\n")
"""


def hostile_repo(tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    """A target whose recipes ``steal``, ``write`` and ``net`` attack the machine; (bare url, sha)."""
    work, bare = tmp_path / "src", tmp_path / "target.git"
    git("-c", "init.defaultBranch=main", "init", "--quiet", str(work))
    env_yaml = "".join(f"      {k}: {json.dumps(v)}\n" for k, v in env.items())
    recipes = "recipes:\n" + "".join(
        f"  {name}:\n    command: [\"python3\", \".leviathan/recipes/hostile.py\", \"{name}\"]\n    env:\n{env_yaml}"
        for name in ("steal", "write", "net")
    )
    files = {".leviathan/recipes.yaml": recipes, ".leviathan/recipes/hostile.py": HOSTILE, "docs/index.md": "# D\n"}
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "hostile", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


def report(tmp_path: Path, repo: Path, sha: str, result: AttemptResult, action: str) -> dict:
    assert result.outcome == "succeeded", result.error
    clone = apply_on_fresh_clone(tmp_path / f"verify-{action}-{time.monotonic_ns()}", repo, sha, result.patch)
    return json.loads((clone / f"docs/{action}.json").read_text())


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its content: 'unchanged' means exactly that."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def spec(repo: Path, sha: str, recipe: str, sandbox: str = "bwrap", **overrides) -> AttemptSpec:
    return make_spec(repo, sha, recipe, task={"allowed_paths": ["docs/"]}, sandbox=sandbox, **overrides)


@pytest.fixture
def holder():
    """A process holding a secret in its environment, as the scheduler holds the forge token."""
    proc = subprocess.Popen(["sleep", "120"], env={"PATH": os.environ["PATH"], PLANTED_NAME: PLANTED})
    yield proc
    proc.kill()
    proc.wait()


def test_the_sandbox_can_be_built_on_this_machine():
    assert probe() is None


def test_proc_shows_no_other_process_and_no_secret(tmp_path, holder, monkeypatch):
    monkeypatch.setenv(PLANTED_NAME, PLANTED)  # the orchestrator's own environment has it too
    repo, sha = hostile_repo(tmp_path, {"X": "1"})
    result = run_local_worker(spec(repo, sha, "steal"), model_api_key=MODEL_KEY)
    stolen = report(tmp_path, repo, sha, result, "steal")
    assert stolen["found"] == []
    assert PLANTED not in result.patch and MODEL_KEY not in result.patch
    # Only the sandbox's own processes exist: bwrap's init, the step, nothing of the host.
    assert stolen["pids"] == ["1", "2"] and stolen["read"] >= 2
    assert result.executor["sandbox"] == "bwrap"


def test_unsandboxed_the_same_recipe_steals_the_secret(tmp_path, holder):
    """The control run: with the opt-out the recipe reads the holder's environment from /proc."""
    repo, sha = hostile_repo(tmp_path, {"X": "1"})
    result = run_local_worker(spec(repo, sha, "steal", sandbox="none"))
    stolen = report(tmp_path, repo, sha, result, "steal")
    leaked = f"{PLANTED_NAME}={PLANTED}" in stolen["found"]
    assert leaked, "the unsandboxed control run should have read the planted variable"
    assert result.executor["sandbox"] == "unsandboxed (opt-out)"


def test_nothing_outside_the_checkout_can_be_written(tmp_path, monkeypatch):
    home, state = tmp_path / "orchestrator-home", tmp_path / "state"
    (home / ".config").mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Airflow\n")
    state.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the worker inherits HOME from the orchestrator
    host_tmp = Path("/tmp") / f"leviathan-sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    flag = host_tmp.with_name(host_tmp.name + "-fsmonitor")
    mirror = tmp_path / "target.git"
    targets = [str(home / ".gitconfig"), str(home / ".config" / "git" / "config"),
               str(mirror / "hooks" / "post-update"), str(mirror / "config"), str(host_tmp / "pwned"),
               str(state / "pwned"), "/etc/pwned", "/usr/pwned", "/pwned"]  # fmt: skip
    repo, sha = hostile_repo(tmp_path, {"TARGETS": json.dumps(targets), "FSMONITOR_FLAG": str(flag)})
    assert repo == mirror
    before = {"home": tree_digest(home), "mirror": tree_digest(mirror), "state": tree_digest(state)}

    result = run_local_worker(spec(repo, sha, "write"), workspace_root=state / "scratch")
    written = report(tmp_path, repo, sha, result, "write")
    # Paths under /tmp land in the sandbox's private tmpfs (gone with it); everything else is read-only.
    outside_tmp = {path: outcome for path, outcome in written.items() if not path.startswith("/tmp/")}
    assert outside_tmp == {"/etc/pwned": "EROFS", "/usr/pwned": "EROFS", "/pwned": "EROFS",
                           ".git/config": "EROFS", ".git/hooks/pre-commit": "EROFS"}
    assert {"home": tree_digest(home), "mirror": tree_digest(mirror), "state": tree_digest(state)} == before
    assert not host_tmp.exists() and not flag.exists()  # and the worker's git ran no planted fsmonitor
    assert not (home / ".config" / "git").exists()
    assert result.changed_paths == ["docs/write.json"]


def test_no_connection_leaves_the_sandbox(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    arrived: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():  # bounded by the test: stop is set right after the attempt
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                arrived.append(conn.recv(100) or b"(connected)")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = str(server.getsockname()[1])
        repo, sha = hostile_repo(tmp_path, {"PORT": port})
        sandboxed = report(tmp_path, repo, sha, run_local_worker(spec(repo, sha, "net")), "net")
        assert sandboxed["connect"] == "ECONNREFUSED"  # the sandbox's loopback is its own: nothing listens
        assert arrived == []
        control = report(tmp_path, repo, sha, run_local_worker(spec(repo, sha, "net", sandbox="none")), "net")
        assert control["connect"] == "connected"
        deadline = time.monotonic() + 5
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.05)
        assert arrived == [b"exfiltrated"]  # the server works: only the sandboxed attempt could not reach it
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


@pytest.mark.parametrize("recipe", ["escape", "escape-hang"])
def test_setsid_and_double_forked_daemons_do_not_survive(tmp_path, recipe):
    repo, sha = make_target_repo(tmp_path)
    marker = str(tmp_path / "pids.json")
    started = time.monotonic()
    result = run_local_worker(make_spec(repo, sha, recipe, timeout_seconds=8))
    if recipe == "escape":
        assert result.outcome == "succeeded", result.error
        assert result.changed_paths == ["docs/escape.md"]
    else:
        assert result.outcome == "timed_out" and result.error.code == "timeout"
        assert time.monotonic() - started < 120
    wait_marked_gone(marker)


def test_a_missing_bwrap_stops_the_attempt_before_the_clone(tmp_path, monkeypatch):
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no-such-bwrap"))
    repo, sha = make_target_repo(tmp_path)
    result = run_local_worker(make_spec(repo, sha))
    assert result.outcome == "failed" and result.error.code == "sandbox_unavailable"
    assert "bubblewrap is not installed" in result.error.message
    assert str(tmp_path / "no-such-bwrap") in result.error.message
    assert result.base_sha is None  # refused before cloning, nothing ran
    assert run_local_worker(make_spec(repo, sha, sandbox="none")).outcome == "succeeded"  # the opt-out runs


def test_a_bwrap_that_cannot_build_the_sandbox_is_unavailable(tmp_path):
    assert "cannot build a sandbox" in (probe("/bin/false") or "")
    assert probe(str(tmp_path / "missing")).startswith("bubblewrap is not installed")


def test_the_argv_keeps_the_checkout_the_only_writable_bind(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    argv = Sandbox(bwrap="/usr/bin/bwrap", checkout=checkout, etc_dir=tmp_path / "etc").argv(
        ["/bin/true"], {"PATH": "/usr/bin"})
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert binds == [str(checkout)]
    assert argv[argv.index("--bind") + 3:argv.index("--bind") + 6] == ["--ro-bind", str(checkout / ".git"),
                                                                       str(checkout / ".git")]
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--clearenv"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[-2:] == ["--", "/bin/true"]


def test_unsandboxed_the_same_recipe_writes_home_mirror_and_git_hooks(tmp_path, monkeypatch):
    """The control run: without the sandbox the orchestrator's HOME and the mirror's hooks are written, and
    the checkout's git config too; only the hardened git runner (which resets the checkout's config and
    overrides fsmonitor) keeps the worker's own git from obeying it."""
    home = tmp_path / "orchestrator-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    flag = tmp_path / "fsmonitor-ran"
    mirror = tmp_path / "target.git"
    targets = [str(home / ".gitconfig"), str(mirror / "hooks" / "post-update")]
    repo, sha = hostile_repo(tmp_path, {"TARGETS": json.dumps(targets), "FSMONITOR_FLAG": str(flag)})
    result = run_local_worker(spec(repo, sha, "write", sandbox="none"))
    assert (home / ".gitconfig").read_text() == "pwned\n"
    assert (mirror / "hooks" / "post-update").read_text() == "pwned\n"
    # Defence in depth: the planted fsmonitor (`touch FLAG 2 TOKEN`) does not run in the worker's `git add`.
    assert not flag.exists()
    assert result.changed_paths == ["docs/write.json"]


def test_spider_shows_where_each_target_runs_its_recipes():
    from leviathan_lib.control.fleet import Overview, TargetState
    from leviathan_lib.core.config import TargetConfig
    from leviathan_lib.evidence.records import History
    from leviathan_lib.spider.view import Viewer, render_fleet
    from leviathan_lib.worker.sandbox import mode_label, required_mode

    def state(target_id: str, **config) -> TargetState:
        target = TargetConfig.model_validate({"target_id": target_id, "target_repo_url": "/r.git", **config})
        return TargetState(target_id=target_id, dag_id=target.dag_id, target_flag=True, dag_paused=False,
                           breaker_open=False, consecutive_failures=0, breaker_threshold=2, effective_enabled=True,
                           sandbox=mode_label(required_mode(target)))  # fmt: skip

    configs = {"safe": {}, "risky": {"unsafe_allow_unsandboxed_recipes": True},
               "pod": {"worker_backend": "kubernetes"}}
    targets = {tid: TargetConfig.model_validate({"target_id": tid, "target_repo_url": "/r.git", **c})
               for tid, c in configs.items()}
    overview = Overview(global_enabled=True, global_detail="on", targets=[state(t, **c) for t, c in configs.items()])
    page = render_fleet(Viewer("v", False, ""), overview, {t: History() for t in configs}, targets, next_runs={})
    rows = {tid: page.split(f'<tr data-target="{tid}">')[1].split("</tr>")[0] for tid in configs}
    assert rows["safe"].endswith("<td>bwrap</td>")
    assert '<strong class="badge no">UNSANDBOXED (opt-out)</strong>' in rows["risky"]
    assert "<td>pod</td>" in rows["pod"] and "UNSANDBOXED" not in rows["safe"] + rows["pod"]
    assert "<th>Sandbox</th>" in page


def test_the_opt_out_is_a_strict_boolean_and_off_by_default():
    from leviathan_lib.core.config import parse_target
    from leviathan_lib.core.errors import ValidationFailed

    base = "target_id: t\ntarget_repo_url: /r.git\n"
    assert parse_target(base, "t.yaml").unsafe_allow_unsandboxed_recipes is False
    with pytest.raises(ValidationFailed) as info:
        parse_target(base + 'unsafe_allow_unsandboxed_recipes: "yes"\n', "t.yaml")
    assert ("t.yaml:3: unsafe_allow_unsandboxed_recipes: expected true or false; write true (YAML 1.2)"
            in str(info.value))
