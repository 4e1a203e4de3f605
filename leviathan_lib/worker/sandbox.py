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
``--tmpfs /tmp``, ``--tmpfs HOME``        private scratch space, gone with the sandbox
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

With ``--unshare-pid`` bwrap runs as the namespace's init: when the step exits (or the sandbox is
killed) the kernel kills every process left in the namespace, ``setsid`` or double-forked daemons
included. Host paths keep their names inside, so paths in logs and errors mean the same on both sides.

If bwrap is missing or cannot build a sandbox here (:func:`probe`), recipes do not run: the cycle stops
with ``sandbox_unavailable``, unless the target file opts out with ``unsafe_allow_unsandboxed_recipes``.
``LEVIATHAN_BWRAP`` names another bwrap binary (tests point it at a missing file to take that path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.worker import egress_shim

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
class Sandbox:
    """One attempt's sandbox: ``checkout`` is writable, ``readonly`` files are visible, nothing else."""

    bwrap: str
    checkout: Path
    #: A directory outside the checkout for the synthesized /etc files.
    etc_dir: Path
    readonly: tuple[Path, ...] = field(default_factory=tuple)
    #: The egress proxy's Unix socket (:meth:`leviathan_lib.worker.egress.EgressProxy.start_unix`); None: offline.
    egress_socket: Path | None = None

    def write_etc(self) -> None:
        """Synthesize /etc/passwd, /etc/group and /etc/hosts for the one sandbox user."""
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

    def argv(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """The bwrap command line running ``command`` (an absolute program and its arguments) with ``env``."""
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
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", SANDBOX_HOME]
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
        sandbox.write_etc()
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
