"""Resource limits, seccomp, keyrings and clean-up against the real bubblewrap sandbox and real processes.

Every hostile recipe carries a unique marker in its command line (children inherit it), so the test can
prove from outside that nothing it started is left running. The limits are small: the target lowers them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from leviathan_lib.core.limits import AttemptLimits, caps_from, resolve_limits
from leviathan_lib.worker import limits_exec
from leviathan_lib.worker.backends.local import run_local_worker
from leviathan_lib.worker.limits import keyctl_number, tree_bytes
from leviathan_lib.worker.scratch import LOCK, PREFIX, attempt_lock
from tests.worker.backends.test_local import wait_marked_gone
from tests.worker.test_attempt import git, make_spec

SMALL = {"processes": 64, "memory_mb": 128, "cpu_seconds": 3, "disk_mb": 16, "open_files": 128}

HOSTILE = """\
import ctypes, errno, os, subprocess, sys, time
from pathlib import Path

action, marker = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)


def keep_trying(what):  # a hostile step does not give up at the first refusal
    for _ in range(20000):
        try:
            return what()
        except OSError:
            time.sleep(0.01)


if action == "fork":
    def child():
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
    for _ in range(400):
        keep_trying(child)
elif action == "fill-tmp":
    for i in range(1024):  # 1 GiB, one MiB a file
        keep_trying(lambda: Path(f"/tmp/fill-{i}").write_bytes(b"x" * (1 << 20)))
elif action == "fill-checkout":
    with open("docs/big.bin", "wb") as out:
        for _ in range(1024):
            out.write(b"x" * (1 << 20))
elif action == "open-files":
    held = []
    for i in range(10000):
        keep_trying(lambda: held.append(open(f"/tmp/f-{i}", "w")))
elif action == "burn-cpu":
    while True:
        pass
elif action == "probe":
    status = Path("/proc/self/status").read_text()
    seccomp = status.split("Seccomp:")[1].split()[0]
    nr = int(os.environ["KEYCTL_NR"])
    results = {"seccomp": seccomp}
    # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0); ptrace(PTRACE_TRACEME)
    for name, call in (("keyctl", lambda: libc.syscall(nr, 0, -3, 0)), ("ptrace", lambda: libc.ptrace(0, 0, 0, 0))):
        ctypes.set_errno(0)
        results[name] = errno.errorcode.get(ctypes.get_errno(), "ok") if call() == -1 else "ok"
    done = subprocess.run(["unshare", "-U", "true"], capture_output=True, text=True)
    results["unshare"] = done.stderr.strip() if done.returncode else "ok"
    Path("docs/probe.json").write_text(__import__("json").dumps(results) + "\\n")
elif action == "mess":
    Path("docs/mess.md").write_text("a change\\n")
    deep = Path("deep")
    os.makedirs("deep", exist_ok=True)
    os.chdir("deep")
    for _ in range(1200):  # deeper than Python's recursion limit
        os.mkdir("d")
        os.chdir("d")
    os.chdir(Path(os.environ["LEVIATHAN_TASK_FILE"]).parent / "checkout")
    os.makedirs("locked/inner", exist_ok=True)
    Path("locked/inner/file").write_text("x")
    os.chmod("locked/inner", 0)
    os.chmod("locked", 0)
    os.symlink("/", "root-link")
    Path("odd-\\x01\\xff-name".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")).write_text("x")
    held = open("held-open", "w")  # still open when the step ends
    os.symlink("/nonexistent/target", "dangling")
"""


def hostile_repo(tmp_path: Path, marker: str) -> tuple[Path, str]:
    """A target whose recipes attack the machine's resources; every step's argv carries ``marker``."""
    work, bare = tmp_path / "src", tmp_path / "target.git"
    git("-c", "init.defaultBranch=main", "init", "--quiet", str(work))
    actions = ("fork", "fill-tmp", "fill-checkout", "open-files", "burn-cpu", "probe", "mess")
    recipes = "recipes:\n" + "".join(
        f"  {a}:\n    command: [\"python3\", \".leviathan/recipes/hostile.py\", \"{a}\", \"{marker}\"]\n"
        for a in actions)
    for name, text in {".leviathan/recipes.yaml": recipes, ".leviathan/recipes/hostile.py": HOSTILE,
                       "docs/index.md": "# D\n"}.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "hostile", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


@pytest.fixture
def marker(tmp_path: Path) -> str:
    return f"leviathan-limits-{os.getpid()}-{time.monotonic_ns()}"


@pytest.fixture
def repo(tmp_path: Path, marker: str) -> tuple[Path, str]:
    return hostile_repo(tmp_path, marker)


def _spec(repo: tuple[Path, str], recipe: str, **overrides):
    return make_spec(*repo, recipe, task={"allowed_paths": ["docs/"]}, **{"limits": SMALL, **overrides})


@pytest.mark.parametrize(("recipe", "which"), [
    ("fork", "processes"), ("fill-tmp", "memory"), ("fill-checkout", "disk"), ("open-files", "open_files"),
    ("burn-cpu", "cpu"),
])
def test_a_step_past_a_limit_ends_resource_limit_naming_it(tmp_path, repo, marker, recipe, which):
    scratch = tmp_path / "scratch"
    cgroups_before = step_cgroups()
    started = time.monotonic()
    result = run_local_worker(_spec(repo, recipe), workspace_root=scratch)
    elapsed = time.monotonic() - started
    assert result.outcome == "failed" and result.error.code == "resource_limit", result.error
    assert result.limits.exceeded == which
    assert f"exceeded its {which} limit" in result.error.message
    assert result.limits.mechanism in ("cgroup-v2", "cgroup-v1", "rlimit")
    assert result.limits.model_dump(exclude={"mechanism", "exceeded"}) == SMALL
    assert result.executor["steps"][0]["exceeded"] == which
    assert elapsed < 60  # quickly: killed at the limit, not at the attempt's timeout
    wait_marked_gone(marker)  # the whole sandbox is gone: nothing it started runs on
    assert list(scratch.iterdir()) == []  # and its scratch too
    assert not set(step_cgroups()) - set(cgroups_before)  # and its cgroup


def step_cgroups() -> list[Path]:
    """Step cgroups of this process's workers that are still there."""
    from leviathan_lib.worker.limits import _mounts, _own_cgroups

    own, found = _own_cgroups(), []
    for point, _, options in _mounts():
        for controller in [c for c in options | {""} if c in own]:
            found += Path(point + own[controller].rstrip("/")).glob("leviathan-step-*")
    return found


@pytest.fixture
def probe_repo(tmp_path: Path, marker: str) -> tuple[Path, str]:
    """The hostile repository with the probe recipe given the keyctl syscall number as its env."""
    bare, _ = hostile_repo(tmp_path, marker)
    work = tmp_path / "probe-work"
    git("clone", "--quiet", str(bare), str(work))
    recipes = (work / ".leviathan/recipes.yaml").read_text().replace(
        f"\"probe\", \"{marker}\"]\n", f"\"probe\", \"{marker}\"]\n    env:\n      KEYCTL_NR: \"{keyctl_number()}\"\n")
    (work / ".leviathan/recipes.yaml").write_text(recipes)
    git("commit", "--quiet", "-am", "probe env", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


def test_the_probe_sees_seccomp_mode_2_and_every_escape_refused(tmp_path, probe_repo):
    result = run_local_worker(_spec(probe_repo, "probe"))
    assert result.outcome == "succeeded", result.error
    line = next(x for x in result.patch.splitlines() if x.startswith("+{"))
    probe = json.loads(line[1:])
    assert probe["seccomp"] == "2"  # a filter is loaded (mode 2), bwrap's --seccomp
    assert probe["keyctl"] == "EPERM" and probe["ptrace"] == "EPERM"
    assert "Operation not permitted" in probe["unshare"]


_KEYRING_SCRIPT = """
import ctypes, json, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
ADD_KEY, KEYCTL = {add_key}, {keyctl}
SESSION = -3


def keyctl(*args):
    return libc.syscall(KEYCTL, *[ctypes.c_long(a) for a in args])


def add_key(description, payload):
    return libc.syscall(ADD_KEY, b"user", description, payload, len(payload), ctypes.c_long(SESSION))


def search(description):  # KEYCTL_SEARCH = 10: the key's serial, or -1 (not found)
    return libc.syscall(KEYCTL, ctypes.c_long(10), ctypes.c_long(SESSION), b"user", description, ctypes.c_long(0))


if sys.argv[1] == "plant":
    assert keyctl(1, 0) > 0  # this test's own session keyring: nothing of the machine's is touched
    assert add_key(b"leviathan-planted", b"worker-secret") > 0
    launcher = {launcher!r}
    config = json.dumps({{"keyctl": KEYCTL}})
    look = [sys.executable, __file__, "look"]
    plain = subprocess.run(look, capture_output=True, text=True).stdout
    first = subprocess.run([sys.executable, "-I", "-S", launcher, config, "--", *look], capture_output=True,
                           text=True).stdout
    second = subprocess.run([sys.executable, "-I", "-S", launcher, config, "--", *look], capture_output=True,
                            text=True).stdout
    print(json.dumps({{"plain": json.loads(plain), "first": json.loads(first), "second": json.loads(second)}}))
else:
    found = {{"session": keyctl(0, SESSION, 0), "planted": search(b"leviathan-planted") > 0,
              "earlier": search(b"leviathan-sandbox-key") > 0}}
    add_key(b"leviathan-sandbox-key", b"from-an-earlier-step")
    print(json.dumps(found))
"""


def test_every_step_gets_a_new_session_keyring(tmp_path):
    """The launcher's layer on its own (no seccomp: the sandbox refuses keyring calls on top of it)."""
    import pyseccomp

    arch = pyseccomp.system_arch()
    script = tmp_path / "keyring.py"
    script.write_text(_KEYRING_SCRIPT.format(add_key=pyseccomp.resolve_syscall(arch, "add_key"),
                                             keyctl=keyctl_number(), launcher=limits_exec.__file__))
    done = subprocess.run([sys.executable, str(script), "plant"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["plain"]["planted"]  # the control: a plain child shares the worker's session keyring
    assert not seen["first"]["planted"] and not seen["second"]["planted"]
    assert not seen["second"]["earlier"]  # what one step put in its keyring, the next does not see
    assert len({seen["plain"]["session"], seen["first"]["session"], seen["second"]["session"]}) == 3


def test_a_defeating_checkout_is_removed_without_a_crash(tmp_path, repo, marker):
    scratch = tmp_path / "scratch"
    result = run_local_worker(_spec(repo, "mess"), workspace_root=scratch)
    assert result.outcome == "failed" and result.error.code == "scope_violation"  # deep/ etc. are out of scope
    assert list(scratch.iterdir()) == []  # 1,200 levels, a chmod-000 directory, a symlink to /: all gone
    assert result.cleanup is None  # nothing swept, nothing left
    assert Path("/").is_dir() and any(Path("/usr/bin").iterdir())  # the symlink was never followed


def test_scratch_a_crashed_attempt_left_is_swept_and_counted(tmp_path, repo):
    scratch = tmp_path / "scratch"
    stale = scratch / f"{PREFIX}crashed"
    deep = stale / "workspace" / "checkout"
    deep.mkdir(parents=True)
    (stale / LOCK).touch()  # its owner died: nobody holds the lock
    (deep / "leftover.bin").write_bytes(b"x" * (1 << 20))
    os.chmod(deep, 0)
    running = scratch / f"{PREFIX}running"
    running.mkdir()
    with attempt_lock(running):  # another attempt, still running: never swept
        result = run_local_worker(_spec(repo, "fill-checkout"), workspace_root=scratch)
    assert result.cleanup.swept_dirs == 1 and result.cleanup.swept_bytes >= 1 << 20
    assert result.cleanup.problems == []
    assert sorted(p.name for p in scratch.iterdir()) == [running.name]


def test_the_target_lowers_the_caps_and_never_raises_them():
    caps = caps_from({"max_attempt_processes": "100", "max_attempt_memory_mb": ""})
    assert caps == AttemptLimits(processes=100)
    from leviathan_lib.core.limits import TargetLimits

    limits, warnings = resolve_limits(TargetLimits(processes=500, memory_mb=256), caps, "t.yaml")
    assert (limits.processes, limits.memory_mb) == (100, 256)
    assert [str(w) for w in warnings] == [
        "t.yaml: limits.processes: 500 is above the deployment's cap (max_attempt_processes = 100); the cap applies"]
    with pytest.raises(ValueError, match="max_attempt_cpu_seconds = 'lots': not a whole number"):
        caps_from({"max_attempt_cpu_seconds": "lots"})


def test_tree_bytes_counts_each_inode_once_at_any_depth_and_never_follows_links(tmp_path):
    empty = tree_bytes(tmp_path)
    (tmp_path / "a").write_bytes(b"x" * 8192)
    os.link(tmp_path / "a", tmp_path / "b")
    os.symlink("/usr", tmp_path / "usr")
    assert 8192 <= tree_bytes(tmp_path) - empty < 8192 + 3 * 4096
    deep = os.open(tmp_path, os.O_RDONLY)
    try:  # past PATH_MAX: no path reaches the file, a walk by file descriptors does
        for _ in range(300):
            os.mkdir("d" * 60, dir_fd=deep)
            deeper = os.open("d" * 60, os.O_RDONLY, dir_fd=deep)
            os.close(deep)
            deep = deeper
        with open(os.open("hidden", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=deep), "wb") as hidden:
            hidden.write(b"x" * (1 << 20))
    finally:
        os.close(deep)
    assert tree_bytes(tmp_path) - empty >= (1 << 20)
    subprocess.run(["rm", "-rf", "--", str(tmp_path / ("d" * 60))], check=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_without_a_cgroup_the_rlimits_and_the_watch_hold(marker):
    """A non-root worker here gets no cgroup (v1 is root's): rlimits, bounded tmpfs and the watch hold."""
    from leviathan_lib.contracts.attempt import result_from_json
    from tests.worker.test_egress import NOBODY, _as_nobody, _nobody_python

    base = Path(tempfile.mkdtemp(prefix="leviathan-nonroot-limits-"))
    try:
        base.chmod(0o755)
        repo = hostile_repo(base, marker)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(base)], check=True)
        found = _nobody_python(base)
        if found is None:
            pytest.skip("no interpreter the unprivileged user can build the sandbox with")
        python, env = found
        results = {}
        for recipe in ("fork", "fill-tmp", "open-files", "burn-cpu"):
            spec_file, output = base / f"{recipe}.json", base / f"{recipe}.out.json"
            spec_file.write_text(_spec(repo, recipe).model_dump_json())
            os.chown(spec_file, NOBODY, NOBODY)
            _as_nobody([python, "-m", "leviathan_lib.worker", "--spec", str(spec_file), "--output", str(output),
                        "--workspace", str(base / f"ws-{recipe}")], env)
            results[recipe] = result_from_json(output.read_text())
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(base)], check=False)
    assert {r: (x.error.code, x.limits.mechanism, x.limits.exceeded) for r, x in results.items()} == {
        "fork": ("resource_limit", "rlimit", "processes"), "fill-tmp": ("resource_limit", "rlimit", "memory"),
        "open-files": ("resource_limit", "rlimit", "open_files"), "burn-cpu": ("resource_limit", "rlimit", "cpu")}
    wait_marked_gone(marker)
