"""The embedded demo: a small target repository with a backlog that exercises every guardrail.

``create_demo_target`` lays out a bare repository (the local forge's remote) and a target file, so
the demo and the tests run the same thing a user would configure by hand; ``runner`` is the
``leviathan demo`` command. May import: ``git``, ``core``; it starts Airflow as subprocesses and talks to
it over its REST API, never through ``control``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from leviathan_lib.git.runner import init_bare, run_git

TEMPLATE = Path(__file__).resolve().parent / "repo"

TARGET_YAML = """\
# Leviathan demo target: a local bare repository with the local forge and the local worker.
target_id: {target_id}
target_repo_url: {repo_url}
target_branch: main
autonomy_enabled: true
allowed_path_prefixes:
  - .leviathan/
  - docs/
max_open_prs: 1
max_prs_per_hour: 3   # the quickstart's merge, close and next PR all fit in one hour
max_running_attempts: 1
max_attempts_per_task: 2
circuit_breaker_failures: 2
{schedule_line}
attempt_timeout_seconds: {timeout}
forge: local
worker_backend: local
required_checks: [lint-docs]   # the repository's own check (recipes.yaml checks:) every change must pass
"""


def create_demo_repo(bare: Path, template: Path = TEMPLATE) -> Path:
    """Create ``bare`` (if missing) with one commit holding the template files on ``main``."""
    if (bare / "HEAD").exists():
        return bare
    init_bare(bare)
    with tempfile.TemporaryDirectory(prefix="leviathan-demo-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(template, work)
        run_git(["init", "--quiet", "-b", "main"], cwd=work)
        run_git(["add", "-A"], cwd=work)
        run_git(["commit", "--quiet", "-m", "Initial commit: widgets with a Leviathan backlog"], cwd=work)
        run_git(["push", "--quiet", "--", str(bare), "main:refs/heads/main"], cwd=work)
    return bare


def create_demo_target(
    root: Path, *, target_id: str = "demo", schedule: str = "*/5 * * * *", timeout: int = 900,
    targets_dir: Path | None = None, webhooks: bool = False,
) -> Path:
    """Create ``root/repos/<id>.git`` and the target file (in ``root/targets`` unless given); return it.

    With ``webhooks`` the target also runs on its change asset (a delivery wakes it in seconds) and
    ``schedule`` is its safety net."""
    bare = create_demo_repo(root / "repos" / f"{target_id}.git")
    targets = targets_dir or root / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    target_file = targets / f"{target_id}.yaml"
    target_file.write_text(
        TARGET_YAML.format(target_id=target_id, repo_url=bare, timeout=timeout, schedule_line=(
            f'webhooks: true\nwebhooks_safety_cron: "{schedule}"   # and within seconds of a forge delivery'
            if webhooks else f'schedule_cron: "{schedule}"')),
        encoding="utf-8",
    )
    return target_file
