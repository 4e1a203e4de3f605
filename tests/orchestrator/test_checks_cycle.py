"""The repository's own checks in real cycles (the DAG through ``dag.test()``) on the local forge.

The demo target requires its ``lint-docs`` check (no TODO marker under docs/): a change that passes opens a
PR whose body shows the checks, one that fails opens none and fails the attempt like any other, a check
already red on the pinned commit is the repository's state (skipped, or delivered with a warning), and
hostile check output reaches the PR only redacted and inert.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from markdown_it import MarkdownIt

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle, xcom
from tests.fake_anthropic import FakeServer, Turn, tool
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.usefixtures("airflow_db")

LEAKED = "ghp_" + "Cq7w" * 9  # a github_token shape, assembled at run time
TODO_INDEX = "# widgets documentation\n\nTODO: say what widgets is.\n"


def leviathan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120)


def _verdicts(record: dict) -> dict[str, list[str]]:
    return {t["id"]: t["reasons"] for t in record["tasks"]}


def _checks(record: dict) -> list[tuple[str, str, bool, int | None]]:
    return [(c["name"], c["phase"], c["passed"], c["exit_code"]) for c in record["attempt"]["checks"]]


def test_the_demo_delivers_a_checked_change_and_refuses_one_its_check_fails(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="checks_demo", targets_dir=targets_dir)
    # four PRs within the hour
    target_file.write_text(target_file.read_text().replace("max_prs_per_hour: 3", "max_prs_per_hour: 10"))
    forge = LocalForge(tmp_path / "repos" / "checks_demo.git")

    first, _ = run_cycle(target_file)
    record = evidence_record(first)
    assert record["stopped_reason"] == "pr_opened" and record["selected_task"] == "docs-quickstart"
    assert _checks(record) == [("lint-docs", "base", True, 0), ("lint-docs", "change", True, 0)]
    [pr] = forge.list_open_prs()
    assert "## Checked before review" in pr.body
    assert "| `lint-docs` | pass | pass | 0 |" in pr.body and "lint-docs: 2 page(s) checked, 0 problem(s)" in pr.body

    # A newcomer merges each PR; the low-priority docs-roadmap comes last, and its recipe leaves a TODO.
    for expected in ("docs-changelog", "docs-faq"):
        forge.merge(len(forge.list_prs()))
        dag_run, _ = run_cycle(target_file)
        assert evidence_record(dag_run)["selected_task"] == expected
    forge.merge(3)
    failed, states = run_cycle(target_file)
    record = evidence_record(failed)
    assert failed.state == "failed" and states[names.TASK_RUN_WORKER] == "failed"
    assert record["selected_task"] == "docs-roadmap" and record["stopped_reason"] == "checks_failed"
    attempt = record["attempt"]
    assert (attempt["outcome"], attempt["error_code"], attempt["error_message"]) == (
        "failed", "checks_failed", "lint-docs exited with 1")
    assert _checks(record) == [("lint-docs", "base", True, 0), ("lint-docs", "change", False, 1)]
    assert "docs/roadmap.md:5: TODO marker left in the page" in attempt["checks"][1]["output_tail"]
    assert [p.number for p in forge.list_prs()] == [1, 2, 3]  # no PR for it
    assert record["ledger"]["attempt_counts"]["docs-roadmap"] == 1 and not record["breaker_opened"]
    # The demo's printed summary shows the checks and the failing one's output, terminal escapes defused.
    from leviathan_lib.demo.runner import summarize

    attempt["checks"][1]["output_tail"] += "\x1b]0;pwned\x07\n"
    summary = "\n".join(summarize(record))
    assert "  check lint-docs on pinned commit: pass (exit 0, " in summary
    assert "  check lint-docs on the change: FAIL (exit 1, " in summary
    assert "    | docs/roadmap.md:5: TODO marker left in the page" in summary and "\x1b" not in summary

    # It counts like any failed attempt: the second failure in a row opens the breaker.
    again, _ = run_cycle(target_file)
    record = evidence_record(again)
    assert record["attempt"]["attempt"] == 2 and record["breaker_opened"] is True
    assert record["attempt"]["checks"][0]["cached"] is True  # the same pinned commit: base from the cache

    table = leviathan("evidence", "--target", "checks_demo")
    assert table.returncode == 0, table.stderr
    assert "CHECKS" in table.stdout and table.stdout.count("lint-docs pass/FAIL(1)") == 2
    assert table.stdout.count("lint-docs pass/pass") == 3
    as_json = json.loads(leviathan("evidence", "--target", "checks_demo", "--json", "--task", "docs-roadmap").stdout)
    assert [r["attempt"]["checks"][1]["exit_code"] for r in as_json] == [1, 1]


def test_red_at_base_skips_without_a_failure_and_waits_for_a_new_commit(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="checks_red", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "checks_red.git"
    commit_file(bare, tmp_path / "work", "docs/index.md", TODO_INDEX, "a human leaves a TODO")
    red_sha = run_git(["--git-dir", str(bare), "rev-parse", "main"]).stdout.strip()

    first, states = run_cycle(target_file)
    record = evidence_record(first)
    assert first.state == "success", states  # the repository's state, not a failure: the run stays green
    assert states[names.TASK_RUN_WORKER] == "success" and states[names.TASK_OPEN_PULL_REQUEST] == "success"
    attempt = record["attempt"]
    assert (attempt["outcome"], attempt["error_code"]) == ("checks_red_at_base", "checks_red_at_base")
    assert record["stopped_reason"] == "checks_red_at_base" and attempt["checks_red_at_base"] == ["lint-docs"]
    assert _checks(record) == [("lint-docs", "base", False, 1)] and attempt["changed_paths"] == []
    assert record["ledger"]["attempt_counts"] == {} and record["ledger"]["red_at_base"] == {
        "docs-quickstart": red_sha}
    assert not record["breaker_opened"] and LocalForge(bare).list_prs() == []

    # The next cycle at the same commit holds that task back; the next one finds the same.
    second, _ = run_cycle(target_file)
    record = evidence_record(second)
    assert _verdicts(record)["docs-quickstart"] == ["checks_red_at_base"]
    assert record["selected_task"] == "docs-faq" and record["attempt"]["outcome"] == "checks_red_at_base"
    assert record["attempt"]["checks"][0]["cached"] is True
    idle, states = run_cycle(target_file)
    record = evidence_record(idle)
    assert record["reasons"] == ["no_eligible_task"] and states[names.TASK_RUN_WORKER] == "skipped"
    assert _verdicts(record)["docs-faq"] == ["checks_red_at_base"]

    # A human fixes the pages: a new commit, and the task runs as its first attempt (nothing was counted).
    commit_file(bare, tmp_path / "work", "docs/index.md", "# widgets documentation\n", "the TODO is done")
    fixed, _ = run_cycle(target_file)
    record = evidence_record(fixed)
    assert record["stopped_reason"] == "pr_opened" and record["attempt"]["branch"] == "agent/docs-quickstart/1"


def test_red_at_base_delivered_with_a_warning_in_the_pr(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="checks_warn", targets_dir=targets_dir)
    target_file.write_text(target_file.read_text() + "checks_red_at_base: deliver_with_warning\n")
    bare = tmp_path / "repos" / "checks_warn.git"
    commit_file(bare, tmp_path / "work", "docs/index.md", TODO_INDEX, "a human leaves a TODO")

    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success" and record["stopped_reason"] == "pr_opened"
    assert record["attempt"]["checks_red_at_base"] == ["lint-docs"]
    assert _checks(record) == [("lint-docs", "base", False, 1), ("lint-docs", "change", False, 1)]
    [pr] = LocalForge(bare).list_open_prs()
    assert "> [!WARNING]\n> Already failing on the pinned commit, before this change: `lint-docs`." in pr.body
    assert "| `lint-docs` | **fail** | **fail** (red at base: not required) | 1 |" in pr.body
    assert "docs/index.md:3: TODO marker left in the page" in pr.body


HOSTILE_CHECK = f"""\
print("<img src=x onerror=alert(1)> <script>alert(2)</script> [login](https://evil.example) @admin")
print("</details>\\n```\\n**owned**")
print("token {LEAKED[:4]}" + "{LEAKED[4:]}")
"""


def test_hostile_check_output_reaches_the_pr_redacted_and_inert(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="checks_hostile", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "checks_hostile.git"
    commit_file(bare, tmp_path / "work", ".leviathan/checks/lint_docs.py", HOSTILE_CHECK, "a noisy check")

    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert record["stopped_reason"] == "pr_opened", record
    [pr] = LocalForge(bare).list_open_prs()
    assert LEAKED not in pr.body and "token [REDACTED:github_token]" in pr.body
    assert LEAKED not in json.dumps(record) and LEAKED not in json.dumps(xcom(dag_run, "run_worker"))
    html = MarkdownIt("gfm-like").render(pr.body)  # raw HTML and autolinks on, like GitHub
    assert "<img" not in html and "<script" not in html and 'href="https://evil.example' not in html
    assert html.count("<details>") == 1 and html.count("</details>") == 1
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "**owned**" in html  # text, in a code block


LLM_BACKLOG = """\
tasks:
  - id: docs-quickstart
    title: "Write the quickstart"
    ready: true
    allowed_paths: ["docs/"]
"""
LLM_RECIPES = """\
recipes: {}
checks:
  lint-docs:
    steps:
      - ["python3", ".leviathan/checks/lint_docs.py"]
"""
DRAFT, FIXED = "# Quickstart\n\nTODO: install steps\n", "# Quickstart\n\nRun `pip install widgets`.\n"


def test_a_model_fixes_its_change_after_the_check_fails_and_the_pr_shows_the_checks(tmp_path, targets_dir,
                                                                                    monkeypatch):
    from leviathan_lib.demo import TEMPLATE

    work, bare = tmp_path / "src", tmp_path / "llm.git"
    run_git(["-c", "init.defaultBranch=main", "init", "--quiet", str(work)])
    files = {".leviathan/backlog.yaml": LLM_BACKLOG, ".leviathan/recipes.yaml": LLM_RECIPES,
             "docs/index.md": "# Docs\n",
             ".leviathan/checks/lint_docs.py": (TEMPLATE / ".leviathan/checks/lint_docs.py").read_text()}
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    run_git(["add", "--all"], cwd=work)
    run_git(["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "init"], cwd=work)
    run_git(["clone", "--quiet", "--bare", str(work), str(bare)])
    target_file = targets_dir / "checks_llm.yaml"
    target_file.write_text(yaml.safe_dump({
        "target_id": "checks_llm", "target_repo_url": str(bare), "autonomy_enabled": True,
        "allowed_path_prefixes": [".leviathan/", "docs/"], "executor": "llm", "llm_model": "openai:gpt-4o",
        "llm_conn_id": "llm_fake", "attempt_timeout_seconds": 120, "required_checks": ["lint-docs"],
    }))  # fmt: skip
    fake = FakeOpenAI([
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": DRAFT})]),
        Turn([tool("finish", {"summary": "Added the quickstart."})]),
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": FIXED})]),
        Turn([tool("finish", {"summary": "Added the quickstart, without the TODO."})]),
    ])  # fmt: skip
    with FakeServer(fake) as url:
        monkeypatch.setenv("AIRFLOW_CONN_LLM_FAKE", json.dumps(
            {"conn_type": "pydanticai", "host": f"{url}/v1", "password": "sk-" + "f" * 40}))
        dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success" and record["stopped_reason"] == "pr_opened", states
    assert len(fake.requests) == 4 and "<<<CHECK_OUTPUT" in json.dumps(fake.requests[2]["messages"][-1])
    assert _checks(record) == [("lint-docs", "base", True, 0), ("lint-docs", "change", True, 0)]
    shown = run_git(["--git-dir", str(bare), "show", "agent/docs-quickstart/1:docs/quickstart.md"]).stdout
    assert shown == FIXED
    [pr] = LocalForge(bare).list_open_prs()
    assert "| `lint-docs` | pass | pass | 0 |" in pr.body
