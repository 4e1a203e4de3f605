"""Recipes: the named commands humans allow the worker to run, kept in the target repository.

A recipe lives in the target's ``.leviathan/recipes.yaml`` (the path is the target's ``recipes_path``)
and is read from the pinned commit, so what runs is exactly what was reviewed in that repository::

    recipes:
      write-quickstart:
        description: "Generate docs/quickstart.md from the template"
        steps:
          - ["python3", ".leviathan/recipes/write_quickstart.py"]
        env:            # optional, plain non-secret values only
          STYLE: short
      touch-changelog:
        command: ["python3", ".leviathan/recipes/changelog.py", "--append"]   # shorthand for one step

Rules:

* ``steps`` is a non-empty list of argv lists; ``command`` is shorthand for a single step. Exactly one
  of the two is given. An argv is a non-empty list of strings and is never run through a shell, so a
  string where a list is expected is an error, not a command line.
* Each step runs with the checkout root as working directory and a closed environment: ``PATH`` (the
  worker's interpreter directory first, so ``python3`` is the worker's Python), ``HOME`` (an empty
  directory outside the checkout), ``LANG=C.UTF-8``, ``LEVIATHAN_TASK_ID``, ``LEVIATHAN_TASK_FILE`` (a
  JSON file with the task, outside the checkout, read-only), ``LEVIATHAN_REVIEW_FEEDBACK_FILE`` when the
  attempt continues a PR a reviewer requested changes on (the review text, read-only, untrusted data)
  and the recipe's ``env``. Nothing else is inherited, so no token of the machine running the worker can
  reach a recipe.
* On the local backend each step runs in the bubblewrap sandbox of :mod:`leviathan_lib.worker.sandbox`:
  the checkout is the only writable host path (its ``.git`` is read-only), ``/tmp`` and ``HOME`` are
  private, there is no network and no other process, and whatever a step leaves running is killed
  when it exits. It runs under the attempt's resource limits: a step past one is killed and the recipe
  fails with the limit named (``resource_limit``).
* ``env`` names are ``[A-Za-z_][A-Za-z0-9_]*``; ``PATH``, ``HOME`` and ``LEVIATHAN_*`` are reserved.
  Values are strings (quote numbers). The file is committed, so it must never hold a secret.
* Steps run in order; the first one exiting non-zero stops the recipe and fails the attempt.
* A recipe only changes files in the checkout; the worker turns those changes into the patch and
  rejects any path outside the task's scope, any symlink and any submodule.

The file's format (and its ``version``) is :mod:`leviathan_lib.contracts.recipes`. The same file declares the
repository's own checks (``checks:``, name → ``steps`` and an optional
``timeout_seconds``), which :mod:`leviathan_lib.worker.checks` runs on the pinned commit and on the change::

    checks:
      lint-docs:
        steps:
          - ["python3", ".leviathan/checks/lint_docs.py"]
        timeout_seconds: 60
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leviathan_lib.contracts.recipes import Recipe
from leviathan_lib.core.limits import LIMIT_FIELDS, LimitKind, LimitsReport, Mechanism

if TYPE_CHECKING:  # plan checks recipes without importing the sandbox
    from leviathan_lib.worker.sandbox import Sandbox

#: Bytes of each stream kept in the result: enough to diagnose, small enough for an XCom.
TAIL_BYTES = 4096


@dataclass
class StepRun:
    argv: list[str]
    exit_code: int | None
    stdout_tail: str
    stderr_tail: str
    duration_seconds: float
    error: str | None = None
    #: The resource limit the step exceeded (it was killed, or failed at it), and how the limits held.
    exceeded: LimitKind | None = None
    mechanism: Mechanism | None = None

    def summary(self) -> dict[str, Any]:
        out = {
            "argv": self.argv,
            "exit_code": self.exit_code,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "duration_seconds": round(self.duration_seconds, 3),
        }
        if self.error:
            out["error"] = self.error
        if self.exceeded:
            out["exceeded"] = self.exceeded
        return out


@dataclass
class RecipeRun:
    name: str
    #: Where the steps ran: ``bwrap``, ``pod`` or ``unsandboxed (opt-out)``.
    sandbox: str
    steps: list[StepRun] = field(default_factory=list)
    #: Human-readable reason when a step failed, else None.
    failure: str | None = None
    #: The limits the sandboxed steps ran under and how they held (None: unsandboxed).
    limits: LimitsReport | None = None
    #: What could not be cleaned up after a step (the recipe's outcome stands).
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {"kind": "recipe", "recipe": self.name, "sandbox": self.sandbox,
               "steps": [s.summary() for s in self.steps]}
        if self.problems:
            out["cleanup_problems"] = self.problems
        return out


def tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    return data[-limit:].decode("utf-8", "replace")


def step_env(
    recipe: Recipe, task_id: str, task_file: Path, home: Path | str, *, path: str | None = None,
    feedback_file: Path | None = None,
) -> dict[str, str]:
    """The closed environment of a step (see the module docstring); ``path`` defaults to the worker's."""
    path = path or os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    env = {
        **recipe.env,
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LEVIATHAN_TASK_ID": task_id,
        "LEVIATHAN_TASK_FILE": str(task_file),
    }
    if feedback_file is not None:
        env["LEVIATHAN_REVIEW_FEEDBACK_FILE"] = str(feedback_file)
    return env


def _run_step(
    argv: list[str], *, cwd: Path, env: dict[str, str], logs: Path, index: int, sandbox: Sandbox | None,
    problems: list[str],
) -> StepRun:
    # Output goes to files, not pipes: a background process left behind by a step cannot block the worker.
    out_path, err_path = logs / f"step-{index}.out", logs / f"step-{index}.err"
    exceeded: LimitKind | None = None
    mechanism: Mechanism | None = None
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env["PATH"])
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        if program is None:
            exit_code, error = None, f"command {argv[0]!r} not found on PATH"
        else:
            command = [program, *argv[1:]]
            try:
                if sandbox is not None:  # bwrap starts with an empty environment and hands the step only ``env``
                    ran = sandbox.run(command, env, cwd=cwd, stdout=out, stderr=err)
                    exit_code, error, exceeded, mechanism = ran.exit_code, None, ran.exceeded, ran.mechanism
                    problems += ran.problems
                else:
                    proc = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, shell=False, check=False)  # fmt: skip
                    exit_code, error = proc.returncode, None
            except OSError as exc:
                exit_code, error = None, f"could not start {argv[0]!r}: {exc.strerror or exc}"
    return StepRun(
        argv=argv,
        exit_code=exit_code,
        stdout_tail=tail(out_path.read_bytes()),
        stderr_tail=tail(err_path.read_bytes()),
        duration_seconds=time.monotonic() - started,
        error=error,
        exceeded=exceeded,
        mechanism=mechanism,
    )


def run_recipe(
    name: str, recipe: Recipe, *, checkout: Path, env: dict[str, str], logs: Path, sandbox: Sandbox | None,
    label: str,
) -> RecipeRun:
    """Run the steps in order (each in ``sandbox``, unless None), stopping at the first that fails."""
    logs.mkdir(parents=True, exist_ok=True)
    run = RecipeRun(name, sandbox=label)
    total = len(recipe.argvs)
    for index, argv in enumerate(recipe.argvs, start=1):
        step = _run_step(argv, cwd=checkout, env=env, logs=logs, index=index, sandbox=sandbox,
                         problems=run.problems)  # fmt: skip
        run.steps.append(step)
        if sandbox is not None and step.mechanism is not None:
            run.limits = LimitsReport(**sandbox.limits.model_dump(), mechanism=step.mechanism, exceeded=step.exceeded)
        if sandbox is not None and step.exceeded:
            value = getattr(sandbox.limits, LIMIT_FIELDS[step.exceeded])
            run.failure = f"step {index} of {total} {argv!r} exceeded its {step.exceeded} limit ({value})"
            break
        if step.error or step.exit_code != 0:
            why = step.error or f"exited with {step.exit_code}"
            run.failure = f"step {index} of {total} {argv!r} {why}"
            break
    return run
