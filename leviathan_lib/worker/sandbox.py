"""The OS sandbox every recipe step runs in on the local backend: bubblewrap (``bwrap``), failing closed.

A recipe is target-repository content, so it is untrusted. The worker itself (trusted code, holding no
secret) clones the pinned commit and diffs the result *outside* the sandbox; only the recipe's steps,
and everything they start, run inside it. One ``bwrap`` per step builds a throw-away world:

========================================  ============================================================
flag                                      why
========================================  ============================================================
``--unshare-all --unshare-user``          own user, PID, mount, IPC, UTS, cgroup and network
                                          namespaces: no other process is visible (``/proc`` holds
                                          only the sandbox's own, so no environment of the worker,
                                          Airflow or the forge can be read) and the network is an
                                          isolated loopback (no connection leaves the sandbox)
``--disable-userns``                      the step cannot nest a user namespace to regain privileges
``--uid/--gid 1000``, ``--cap-drop ALL``  an unprivileged user with no capabilities, even when the
                                          worker runs as root
``--die-with-parent``                     the sandbox is killed when the worker dies (a timeout kill)
``--new-session``                         no ioctl on the worker's terminal (TIOCSTI)
``--clearenv`` + ``--setenv``             only PATH, HOME, LANG, the ``LEVIATHAN_*`` task variables and
                                          the recipe's declared ``env``; bwrap itself starts with an
                                          empty environment, so the sandbox's init holds nothing
``--ro-bind /usr`` (+ ``/bin`` etc.)      the system, read-only (merged-/usr symlinks are recreated)
``--ro-bind-try /etc/<few>``              only what programs need to start (dynamic linker cache,
                                          alternatives, time zone); ``/etc/passwd`` and ``/etc/group``
                                          are synthesized (one user, ``leviathan``)
``--ro-bind`` of the Python prefixes      ``python3`` on PATH is the worker's interpreter, read-only
``--size N --tmpfs /tmp`` and HOME        private scratch space, gone with the sandbox, bounded: it is
                                          memory (charged to the step's cgroup, when there is one), so
                                          /tmp holds half the memory budget and HOME a quarter
``--seccomp FD``                          the filter of :mod:`leviathan_lib.worker.limits` (keyrings,
                                          ptrace, new user namespaces, mounts, ... refused), also on
                                          bwrap's init
``--bind CHECKOUT``                       the ONLY writable host path: the clone the patch comes from
``--ro-bind CHECKOUT/.git``               the step cannot change git config or hooks, which the worker's
                                          git (outside the sandbox) would otherwise obey
``--ro-bind`` of the task file            ``LEVIATHAN_TASK_FILE``, read-only
``--remount-ro /``                        nothing else in the sandbox's root is writable
``--ro-bind`` of the egress socket's      only when the target allows egress (``sandbox_egress``): the
directory and of ``egress_shim.py``       step runs under :mod:`leviathan_lib.worker.egress_shim`,
                                          which relays the sandbox's own ``127.0.0.1:3128`` to the
                                          attempt's proxy (:mod:`leviathan_lib.worker.egress`); the
                                          network namespace stays private, so nothing else leads out
========================================  ============================================================

bwrap is not started directly: :mod:`leviathan_lib.worker.limits_exec` starts it, after joining the step's
cgroup, setting its rlimits and joining a new session keyring; :meth:`Sandbox.run` watches the step against
the attempt's limits (:mod:`leviathan_lib.worker.limits`) and kills the sandbox past one.

With ``--unshare-pid`` bwrap runs as the namespace's init: when the step exits (or the sandbox is
killed) the kernel kills every process left in the namespace, ``setsid`` or double-forked daemons
included. Host paths keep their names inside, so paths in logs and errors mean the same on both sides.

If bwrap is missing or cannot build a sandbox here (:func:`probe`), recipes do not run: the cycle stops
with ``sandbox_unavailable``, unless the target file opts out with ``unsafe_allow_unsandboxed_recipes``.
``LEVIATHAN_BWRAP`` names another bwrap binary (tests point it at a missing file to take that path).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.limits import AttemptLimits, LimitKind, Mechanism
from leviathan_lib.worker import egress_shim, limits_exec
from leviathan_lib.worker.limits import (
    MIB,
    POLL_SECONDS,
    Budget,
    StepCgroup,
    StepWatch,
    keyctl_number,
    own_uid_tasks,
    tree_bytes,
    write_seccomp_program,
)

BWRAP_ENV = "LEVIATHAN_BWRAP"
DEFAULT_BWRAP = "/usr/bin/bwrap"
#: The unprivileged user inside the sandbox (mapped to the worker's own uid outside).
SANDBOX_UID = 1000
SANDBOX_USER = "leviathan"
SANDBOX_HOME = "/home/leviathan"
SANDBOX_HOSTNAME = "leviathan-sandbox"
#: Time a probe may take before the sandbox counts as unavailable.
PROBE_TIMEOUT_SECONDS = 20.0
#: Host files of /etc a program may need to start; bound read-only when they exist.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf")
#: Top-level directories that merged-/usr systems make symlinks into /usr.
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

#: How an attempt's recipe is contained: ``bwrap`` (local backend), ``pod`` (the Kubernetes pod is the
#: sandbox), ``none`` (local backend, the target opted out with ``unsafe_allow_unsandboxed_recipes``).
SandboxMode = Literal["bwrap", "pod", "none"]
_LABELS: dict[str, str] = {"bwrap": "bwrap", "pod": "pod", "none": "unsandboxed (opt-out)"}


def required_mode(target: TargetConfig) -> SandboxMode:
    """The sandbox the orchestrator requires for ``target``'s recipes (the worker refuses anything less)."""
    if target.worker_backend == "kubernetes":
        return "pod"
    return "none" if target.unsafe_allow_unsandboxed_recipes else "bwrap"


def mode_label(mode: SandboxMode) -> str:
    """The human label evidence and Spider show: ``bwrap``, ``pod`` or ``unsandboxed (opt-out)``."""
    return _LABELS[mode]


def bwrap_path() -> str:
    """The bwrap binary: ``$LEVIATHAN_BWRAP`` or ``/usr/bin/bwrap``."""
    return os.environ.get(BWRAP_ENV) or DEFAULT_BWRAP


def _python_dirs() -> list[str]:
    """The interpreter's directories (venv and base install) outside /usr, outermost first, deduplicated."""
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)]
    dirs: list[str] = []
    for raw in candidates:
        path = os.path.abspath(raw)
        if path == "/usr" or path.startswith("/usr/"):
            continue
        if not any(path == d or path.startswith(d + "/") for d in dirs):
            dirs = [d for d in dirs if not d.startswith(path + "/")] + [path]
    return dirs


def sandbox_path() -> str:
    """PATH inside the sandbox: the worker's interpreter first (``python3`` is the worker's Python)."""
    return os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])


@dataclass(frozen=True)
class StepExit:
    """How a sandboxed step ended: its exit code, the limit it exceeded (if any) and how the limits held."""

    exit_code: int
    exceeded: LimitKind | None
    mechanism: Mechanism
    #: What could not be cleaned up after it (a cgroup that would not go away).
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sandbox:
    """One attempt's sandbox: ``checkout`` is writable, ``readonly`` files are visible, nothing else."""

    bwrap: str
    checkout: Path
    #: A directory outside the checkout for the synthesized /etc files.
    etc_dir: Path
    readonly: tuple[Path, ...] = field(default_factory=tuple)
    #: The egress proxy's Unix socket (:meth:`leviathan_lib.worker.egress.EgressProxy.start_unix`); None: offline.
    egress_socket: Path | None = None
    #: The limits of every step (the attempt's; :mod:`leviathan_lib.core.limits`).
    limits: AttemptLimits = field(default_factory=AttemptLimits)
    #: What the attempt's steps used so far (CPU time, the checkout's size before the first step).
    budget: Budget = field(default_factory=Budget, compare=False)

    @property
    def seccomp_program(self) -> Path:
        return self.etc_dir / "seccomp.bpf"

    def write_etc(self) -> None:
        """Synthesize /etc/passwd, /etc/group and /etc/hosts for the one sandbox user, and compile the seccomp
        filter."""
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        uid = SANDBOX_UID
        files = {
            "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                      f"{SANDBOX_USER}:x:{uid}:{uid}:Leviathan recipe:{SANDBOX_HOME}:/bin/sh\n"
                      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            "group": f"root:x:0:\n{SANDBOX_USER}:x:{uid}:\nnogroup:x:65534:\n",
            "hosts": f"127.0.0.1 localhost {SANDBOX_HOSTNAME}\n::1 localhost\n",
        }  # fmt: skip
        for name, text in files.items():
            (self.etc_dir / name).write_text(text, encoding="utf-8")
        write_seccomp_program(self.seccomp_program)

    def argv(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """The command line running ``command`` (an absolute program and its arguments) with ``env``: the
        launcher, then bwrap. Without :meth:`run`'s cgroup and watch, the rlimits, seccomp and keyring hold."""
        return self._launch(command, env, None)

    def _tmpfs_sizes(self) -> dict[str, int]:
        """/tmp half the memory budget, HOME a quarter: a full tmpfs is seen (and named) before the cgroup
        would have to refuse the pages, which it does by slow reclaim, not by the OOM killer."""
        memory = self.limits.memory_mb * MIB
        return {"/tmp": memory // 2, SANDBOX_HOME: memory // 4}

    def _rlimits(self, cgroup: StepCgroup | None) -> dict[str, tuple[int, int]]:
        """``[soft, hard]`` per rlimit; CPU gets a second of grace after SIGXCPU, then SIGKILL."""
        limits = self.limits
        cpu = max(1, math.ceil(limits.cpu_seconds - self.budget.cpu_used))
        values = {"RLIMIT_FSIZE": limits.disk_mb * MIB, "RLIMIT_NOFILE": limits.open_files, "RLIMIT_CORE": 0}
        if cgroup is None:  # the cgroup bounds memory and processes of the whole sandbox instead
            values |= {"RLIMIT_AS": limits.memory_mb * MIB, "RLIMIT_NPROC": limits.processes + own_uid_tasks()}
        return {"RLIMIT_CPU": (cpu, cpu + 1)} | {name: (value, value) for name, value in values.items()}

    def _launch(self, command: Sequence[str], env: Mapping[str, str], cgroup: StepCgroup | None) -> list[str]:
        config = {"cgroup_procs": cgroup.procs_files if cgroup else [], "rlimits": self._rlimits(cgroup),
                  "keyctl": keyctl_number(), "seccomp": str(self.seccomp_program)}
        return [sys.executable, "-I", "-S", limits_exec.__file__, json.dumps(config), "--",
                *self._bwrap(command, env, self._tmpfs_sizes())]

    def run(self, command: Sequence[str], env: Mapping[str, str], *, cwd: Path, stdout: IO[bytes],
            stderr: IO[bytes]) -> StepExit:
        """Run ``command`` in the sandbox under the limits, killing it past one; how it ended."""
        if self.budget.disk_baseline is None:
            self.budget.disk_baseline = tree_bytes(self.checkout)
        cgroup = StepCgroup.create(self.limits)
        try:
            proc = subprocess.Popen(self._launch(command, env, cgroup), cwd=cwd, env={}, stdin=subprocess.DEVNULL,
                                    stdout=stdout, stderr=stderr)  # fmt: skip
            watch = StepWatch(proc, self.limits, self.budget, self.checkout, cgroup, self._tmpfs_sizes())
            killed = None
            try:
                while killed is None:
                    try:
                        proc.wait(timeout=POLL_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        killed = watch.check()
            finally:
                proc.kill()  # bwrap is gone already, or is the sandbox to end: its init dies with it
                proc.wait()
            exceeded = watch.finish(proc.returncode, killed)
        finally:
            problems = cgroup.remove() if cgroup else []
        return StepExit(proc.returncode, exceeded, cgroup.mechanism if cgroup else "rlimit", problems)

    def _bwrap(self, command: Sequence[str], env: Mapping[str, str], tmpfs: Mapping[str, int]) -> list[str]:
        args = [
            self.bwrap,
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
            "--hostname", SANDBOX_HOSTNAME,
            "--die-with-parent", "--new-session",
            "--clearenv",
        ]  # fmt: skip
        for name, value in env.items():
            args += ["--setenv", name, value]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in _USR_LINKS:
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        for name in _ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for name in ("passwd", "group", "hosts"):
            args += ["--ro-bind", str(self.etc_dir / name), f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for where, size in tmpfs.items():
            args += ["--size", str(size), "--tmpfs", where]
        for path in _python_dirs():
            args += ["--ro-bind", os.path.realpath(path), path]
        checkout = str(self.checkout)
        args += ["--bind", checkout, checkout]
        git_dir = self.checkout / ".git"
        if git_dir.exists():
            args += ["--ro-bind", str(git_dir), str(git_dir)]
        for file in self.readonly:
            args += ["--ro-bind", str(file), str(file)]
        if self.egress_socket is not None:
            shim, sockets = egress_shim.__file__, str(self.egress_socket.parent)
            args += ["--ro-bind", sockets, sockets, "--ro-bind", shim, shim]
            command = [sys.executable, "-I", "-S", shim, str(self.egress_socket),
                       str(egress_shim.SANDBOX_PROXY_PORT), "--", *command]  # fmt: skip
        args += ["--remount-ro", "/", "--chdir", checkout, "--", *command]
        return args


def base_env(home: str = SANDBOX_HOME) -> dict[str, str]:
    """The variables every sandboxed step gets (the recipe's and the task's are added by the caller)."""
    return {"PATH": sandbox_path(), "HOME": home, "LANG": "C.UTF-8"}


def probe(bwrap: str | None = None) -> str | None:
    """None when a sandbox can be built here; else why not (bwrap missing, or it failed to start ``true``)."""
    bwrap = bwrap or bwrap_path()
    if not os.path.isfile(bwrap) or not os.access(bwrap, os.X_OK):
        return f"bubblewrap is not installed: {bwrap} is not an executable file (install the 'bubblewrap' package)"
    with tempfile.TemporaryDirectory(prefix="leviathan-sandbox-probe-") as tmp:
        checkout = Path(tmp) / "checkout"
        checkout.mkdir()
        sandbox = Sandbox(bwrap=bwrap, checkout=checkout, etc_dir=Path(tmp) / "etc")
        try:
            sandbox.write_etc()
        except (OSError, RuntimeError, ImportError) as exc:  # libseccomp missing: no filter, no sandbox
            return f"cannot compile the sandbox's seccomp filter: {exc}"
        try:
            proc = subprocess.run(
                sandbox.argv(["/bin/sh", "-c", "touch probe"], base_env()), env={}, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=PROBE_TIMEOUT_SECONDS, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{bwrap} cannot start a sandbox: {exc}"
        if proc.returncode != 0 or not (checkout / "probe").is_file():
            detail = proc.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit {proc.returncode}"
            return f"{bwrap} cannot build a sandbox on this machine: {detail}"
    return None
