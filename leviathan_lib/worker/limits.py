"""Resource limits, the seccomp filter and the watch of one sandboxed step (docs/security.md, "Limits").

Every step runs under the attempt's :class:`~leviathan_lib.core.limits.AttemptLimits`:

* **a cgroup** when the machine lets the worker make one (:class:`StepCgroup`): a child of a delegated
  cgroup v2 (``memory`` and ``pids`` enabled for children, writable by the worker), else of the worker's own
  cgroups of a v1 ``memory`` and ``pids`` hierarchy (root on a host that still mounts v1). It caps the
  processes (``pids.max``) and the memory of the whole sandbox, its tmpfs pages included (tmpfs is charged
  to the cgroup of the process that writes it), without swap;
* **rlimits** always (set by :mod:`leviathan_lib.worker.limits_exec` before bwrap, soft = hard):
  ``RLIMIT_CPU`` (what is left of the attempt's CPU time, per process), ``RLIMIT_FSIZE`` (``disk_mb``, per
  file), ``RLIMIT_NOFILE``, ``RLIMIT_CORE`` 0 and, without a cgroup, ``RLIMIT_AS`` (``memory_mb`` per
  process) and ``RLIMIT_NPROC`` (the uid's processes plus ``processes``: it counts per uid, and not at all
  for root);
* **size-bounded tmpfs** for /tmp and HOME (``bwrap --size``);
* **the watch** (:class:`StepWatch`), polling while the step runs: the pids and memory counters of the
  cgroup, else the sandbox's tasks and full tmpfs; the CPU time of the whole tree against the attempt's
  budget; the largest open-file count; and what the checkout grew by. Past a limit it kills the sandbox
  (bwrap is the PID namespace's init: everything in it dies) and names the limit.

The seccomp filter (:func:`write_seccomp_program`, through libseccomp's ``pyseccomp`` bindings) refuses
with ``EPERM`` what no recipe needs and what would reach outside: keyrings, ptrace and cross-process memory,
new user namespaces, mounts, modules, kexec, BPF, perf, swap, reboot, setns, handle-based opens,
userfaultfd, io_uring, clock changes and TIOCSTI. ``clone3`` answers ``ENOSYS`` (its flags cannot be
inspected, so libc falls back to ``clone``, whose ``CLONE_NEWUSER`` is refused).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from leviathan_lib.core.limits import AttemptLimits, LimitKind, Mechanism

MIB = 1 << 20
#: Seconds between two looks at a running step; the checkout is measured at most every DISK_SECONDS.
POLL_SECONDS = 0.1
DISK_SECONDS = 1.0
#: Free bytes below which a sandbox tmpfs counts as full.
_TMPFS_FULL = 64 * 1024
_CLONE_NEWUSER = 0x10000000
_CG_PREFIX = "leviathan-step-"
_TICKS = os.sysconf("SC_CLK_TCK")

#: Syscalls refused with EPERM inside the sandbox (names libseccomp does not know are skipped).
DENIED_SYSCALLS = (
    "add_key", "request_key", "keyctl",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog", "vhangup", "lookup_dcookie",
    "settimeofday", "clock_settime", "clock_adjtime", "iopl", "ioperm",
)  # fmt: skip


def write_seccomp_program(path: Path) -> None:
    """Compile the sandbox's seccomp filter to ``path`` (a BPF program for ``bwrap --seccomp``)."""
    import pyseccomp as seccomp

    deny = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        with contextlib.suppress(ValueError, OSError):  # unknown to this libseccomp: that kernel has none either
            rules.add_rule(deny, name)
    rules.add_rule(deny, "unshare", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER))
    rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER))
    rules.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, termios.TIOCSTI))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with open(path, "wb") as out:
        rules.export_bpf(out)


def keyctl_number() -> int:
    """The ``keyctl`` syscall's number on this machine (for the launcher, which has no libseccomp)."""
    import pyseccomp as seccomp

    return int(seccomp.resolve_syscall(seccomp.system_arch(), "keyctl"))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def _counter(path: Path, name: str) -> int:
    """``name N`` from a flat-keyed cgroup file (``pids.events``, ``memory.events``, ``memory.oom_control``)."""
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of the cgroup file systems this process sees."""
    found = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        fields = line.split(" ")
        if "-" not in fields:
            continue
        tail = fields[fields.index("-") + 1:]
        if len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4].replace("\\040", " "), tail[0], set(tail[2].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """Controller (``""`` for v2) → this process's cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK) and os.access(directory / "cgroup.procs", os.W_OK)


def _v2_parent(mounts: list[tuple[str, str, set[str]]], own: dict[str, str]) -> Path | None:
    """The nearest cgroup v2 at or above this process's that delegates ``memory`` and ``pids`` to us."""
    for point, kind, _ in mounts:
        if kind != "cgroup2" or "" not in own:
            continue
        here = Path(point + own[""].rstrip("/"))
        for directory in (here, *here.parents):
            if not directory.is_relative_to(point):
                break
            enabled = set(_read(directory / "cgroup.subtree_control").split())
            if {"memory", "pids"} <= enabled and _writable(directory):
                return directory
    return None


def _v1_parents(mounts: list[tuple[str, str, set[str]]], own: dict[str, str]) -> dict[str, Path] | None:
    """This process's cgroups in writable v1 ``memory`` and ``pids`` hierarchies, or None."""
    parents: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        for point, kind, options in mounts:
            if kind == "cgroup" and controller in options and controller in own:
                directory = Path(point + own[controller].rstrip("/"))
                if _writable(directory):
                    parents[controller] = directory
    return parents if len(parents) == 2 else None


def _worker_gone(name: str) -> bool:
    """True when the worker named in a step cgroup's name (``leviathan-step-PID-N``) no longer runs."""
    pid = name.removeprefix(_CG_PREFIX).split("-")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _sweep_stale(parent: Path) -> None:
    """Remove the empty step cgroups of workers that are gone (a live worker's may be empty for a moment,
    between its creation and the launcher joining it)."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            if (entry.name.startswith(_CG_PREFIX) and _worker_gone(entry.name)
                    and not _read(entry / "cgroup.procs").strip()):
                with contextlib.suppress(OSError):
                    entry.rmdir()


@dataclass
class StepCgroup:
    """The cgroup(s) of one step: created with the limits written, joined by the launcher, removed after."""

    mechanism: Mechanism
    #: controller → directory (v2: one directory under ``""``).
    dirs: dict[str, Path]

    @classmethod
    def create(cls, limits: AttemptLimits) -> StepCgroup | None:
        """A cgroup holding ``limits``, or None when this machine gives the worker none."""
        mounts, own = _mounts(), _own_cgroups()
        name = f"{_CG_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        v2 = _v2_parent(mounts, own)
        parents = {"": v2} if v2 is not None else _v1_parents(mounts, own)
        if not parents:
            return None
        group = cls("cgroup-v2" if v2 is not None else "cgroup-v1", {})
        try:
            for controller, parent in parents.items():
                _sweep_stale(parent)
                (parent / name).mkdir()
                group.dirs[controller] = parent / name
            group._write_limits(limits)
        except OSError:
            group.remove()
            return None
        return group

    def _write_limits(self, limits: AttemptLimits) -> None:
        memory = str(limits.memory_mb * MIB)
        if self.mechanism == "cgroup-v2":
            values = {"pids.max": str(limits.processes), "memory.max": memory, "memory.swap.max": "0"}
            base = self.dirs[""]
            for name, value in values.items():
                if (base / name).exists() or name != "memory.swap.max":
                    (base / name).write_text(value)
            return
        (self.dirs["pids"] / "pids.max").write_text(str(limits.processes))
        (self.dirs["memory"] / "memory.limit_in_bytes").write_text(memory)
        swap = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(memory)

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def exceeded(self) -> LimitKind | None:
        """The limit the kernel enforced so far: ``pids.max`` refused a fork, or the OOM killer ran."""
        pids = self.dirs.get("pids", self.dirs.get(""))
        memory = self.dirs.get("memory", self.dirs.get(""))
        assert pids is not None and memory is not None
        if _counter(pids / "pids.events", "max"):
            return "processes"
        events = "memory.events" if self.mechanism == "cgroup-v2" else "memory.oom_control"
        return "memory" if _counter(memory / events, "oom_kill") else None

    def remove(self) -> list[str]:
        """Kill whatever is left in the cgroups and remove them; what could not be removed."""
        problems = []
        for directory in self.dirs.values():
            for _ in range(100):  # bounded: 100 × 20 ms
                pids = [int(p) for p in _read(directory / "cgroup.procs").split() if p.isdigit()]
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    directory.rmdir()
                if not directory.exists():
                    break
                time.sleep(0.02)
            else:
                problems.append(f"cgroup {directory} could not be removed")
        return problems


def _tasks_of_tree(root: int) -> dict[int, int]:
    """pid → task count of ``root`` and all its descendants (a snapshot; processes may come and go)."""
    tree: dict[int, int] = {}
    stack = [root]
    while stack and len(tree) < 1_000_000:
        pid = stack.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        tree[pid] = len(tids)
        for tid in tids:
            stack += [int(c) for c in _read(Path(f"/proc/{pid}/task/{tid}/children")).split() if c.isdigit()]
    return tree


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of the children it reaped."""
    text = _read(Path(f"/proc/{pid}/stat"))
    fields = text[text.rfind(")") + 2:].split()
    return sum(int(f) for f in fields[11:15]) / _TICKS if len(fields) > 14 else 0.0


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _readable(root: Path) -> None:
    """``chmod -R u+rwX``: directories the step closed are open again (files keep their executable bits)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["chmod", "-R", "u+rwX", "--", str(root)], env={"PATH": "/usr/bin:/bin"},
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=False)  # fmt: skip


def tree_bytes(root: Path) -> int:
    """Disk blocks (bytes) used under ``root``, each inode once, links never followed, at any depth
    (coreutils ``du``: a tree deeper than PATH_MAX cannot hide from it); 0 when it cannot be measured."""
    try:
        done = subprocess.run(["du", "-s", "-B1", "-x", "-P", "--", str(root)], env={"PATH": "/usr/bin:/bin"},
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return 0
    first = done.stdout.split(b"\t", 1)[0]
    return int(first) if first.isdigit() else 0


@dataclass
class Budget:
    """What an attempt's steps used so far: CPU seconds, and the checkout's size before the first step."""

    cpu_used: float = 0.0
    disk_baseline: int | None = None


@dataclass
class StepWatch:
    """Polls a running step against its limits; :meth:`check` names a limit past which it must be killed."""

    proc: subprocess.Popen[bytes]
    limits: AttemptLimits
    budget: Budget
    checkout: Path
    cgroup: StepCgroup | None
    #: Sandbox path → size of its tmpfs (found through /proc/PID/root and held open, so its fill level can
    #: still be read after the sandbox is gone).
    tmpfs: dict[str, int]
    _held: dict[str, int] = field(default_factory=dict)
    _cpu: float = 0.0
    _disk_at: float = 0.0

    def check(self) -> LimitKind | None:
        if self.cgroup is not None and (hit := self.cgroup.exceeded()):
            return hit
        tree = _tasks_of_tree(self.proc.pid)
        if self.cgroup is None and sum(tree.values()) >= self.limits.processes:
            return "processes"
        self._cpu = max(self._cpu, sum(_cpu_seconds(pid) for pid in tree))
        if self.budget.cpu_used + self._cpu >= self.limits.cpu_seconds:
            return "cpu"
        if any(_open_files(pid) >= self.limits.open_files for pid in tree):
            return "open_files"
        self._hold_tmpfs(tree)
        if self._tmpfs_full():
            return "memory"
        if time.monotonic() >= self._disk_at:
            started = time.monotonic()
            if self.disk_written() >= self.limits.disk_mb * MIB:
                return "disk"
            self._disk_at = time.monotonic() + max(DISK_SECONDS, 10 * (time.monotonic() - started))
        return None

    def disk_written(self) -> int:
        baseline = self.budget.disk_baseline or 0
        return max(0, tree_bytes(self.checkout) - baseline)

    def _hold_tmpfs(self, tree: dict[int, int]) -> None:
        """Open each sandbox tmpfs once it is mounted (told apart from the host's by its exact size)."""
        for where, size in self.tmpfs.items():
            if where in self._held:
                continue
            for pid in tree:
                path = f"/proc/{pid}/root{where}"
                with contextlib.suppress(OSError):
                    info = os.statvfs(path)
                    if info.f_blocks * info.f_frsize == size:
                        self._held[where] = os.open(path, os.O_PATH | os.O_DIRECTORY)
                        break

    def _tmpfs_full(self) -> bool:
        for fd in self._held.values():
            info = os.fstatvfs(fd)
            if info.f_bavail * info.f_frsize < _TMPFS_FULL:
                return True
        return False

    def finish(self, exit_code: int, killed: LimitKind | None) -> LimitKind | None:
        """After the step: the limit it exceeded (None: none); the CPU time seen is added to the budget (a
        lower bound: what ran after the last look is not seen, and RLIMIT_CPU bounds each process anyway)."""
        self.budget.cpu_used += self._cpu
        try:
            if killed is not None:
                return killed
            if self.cgroup is not None and (hit := self.cgroup.exceeded()) and exit_code != 0:
                return hit
            _readable(self.checkout)  # a directory the step made unreadable hides nothing from the measure
            if self.disk_written() >= self.limits.disk_mb * MIB:
                return "disk"  # what stays in the checkout counts, however the step ended
            if exit_code == 0:
                return None
            if exit_code == 128 + signal.SIGXCPU or self.budget.cpu_used >= self.limits.cpu_seconds:
                return "cpu"
            if exit_code == 128 + signal.SIGXFSZ:
                return "disk"
            return "memory" if self._tmpfs_full() else None
        finally:
            for fd in self._held.values():
                os.close(fd)
            self._held.clear()


def own_uid_tasks() -> int:
    """Tasks of this process's real uid on the machine (RLIMIT_NPROC counts them with the sandbox's)."""
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count
