"""The step's launcher: outside the sandbox, between the worker and ``bwrap``, in a fresh single-threaded
process (the worker has threads: the egress proxy), so nothing is done in a ``preexec_fn``.

``python3 -I -S limits_exec.py CONFIG_JSON -- BWRAP ARGS...`` joins the step's cgroups (``cgroup_procs``:
before anything forks, so every sandbox process is counted), sets the ``rlimits`` (``[soft, hard]`` each;
inherited by bwrap and the step), joins a new anonymous session keyring (``keyctl`` is the syscall
number: the worker's own session keyring, and any earlier sandbox's, stay out of reach), opens the
compiled seccomp program (``seccomp``) for ``bwrap --seccomp FD``, and execs bwrap. Standard library
only (``-I -S``: no site-packages, no environment). Any failure exits 125 before bwrap runs: the step
never runs with less than it was given.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import sys

FAILED = 125
_KEYCTL_JOIN_SESSION_KEYRING = 1


def _join_session_keyring(number: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(number), ctypes.c_long(_KEYCTL_JOIN_SESSION_KEYRING), ctypes.c_void_p(None)) < 0:
        code = ctypes.get_errno()
        if code != errno.ENOSYS:  # a kernel without keyrings has none to share
            raise OSError(code, f"cannot join a new session keyring: {os.strerror(code)}")


def launch(config: dict[str, object], command: list[str]) -> list[str]:
    """Apply ``config`` to this process; the bwrap command line to exec."""
    for path in config.get("cgroup_procs") or []:  # type: ignore[attr-defined]
        with open(str(path), "w", encoding="ascii") as procs:
            procs.write(str(os.getpid()))
    for name, (soft, hard) in (config.get("rlimits") or {}).items():  # type: ignore[attr-defined]
        resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))
    keyctl = config.get("keyctl")
    if isinstance(keyctl, int):
        _join_session_keyring(keyctl)
    seccomp = config.get("seccomp")
    if isinstance(seccomp, str):
        fd = os.open(seccomp, os.O_RDONLY)
        os.set_inheritable(fd, True)
        command = [command[0], "--seccomp", str(fd), *command[1:]]
    return command


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: limits_exec.py CONFIG_JSON -- BWRAP ARGS...", file=sys.stderr)
        return FAILED
    try:
        command = launch(json.loads(argv[1]), argv[3:])
        os.execv(command[0], command)
    except (OSError, ValueError, AttributeError) as exc:
        print(f"leviathan: cannot apply the sandbox's limits: {exc}", file=sys.stderr)
    return FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
