"""The dashboard issue in real cycles (``dag.test()``): the local forge and the spec-validated fake GitHub.

A repo owner reads the dashboard to see why each task did or did not run; these tests check that it is
written once, rewritten only when what it shows changes, read only for its boxes (test_dashboard_ticks.py),
and that edits, closes, deletions and forge errors are handled without a duplicate issue and without stopping
the cycle.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from tests.airflow_helpers import commit_file, evidence_record, run_cycle
from tests.fake_github import FakeGithub, connection_env

pytestmark = pytest.mark.usefixtures("airflow_db")

BACKLOG = ".leviathan/backlog.yaml"
HOSTILE_TITLE = "@octocat see [here](https://evil.example/x) <img src=x onerror=alert(1)> #1 | www.evil.example"


def _target(tmp_path: Path, targets_dir: Path, target_id: str, *, autonomy: bool = False) -> tuple[Path, Path]:
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    text = target_file.read_text()
    if not autonomy:
        text = text.replace("autonomy_enabled: true", "autonomy_enabled: false")
    target_file.write_text(text + "dashboard: true\n")
    return target_file, tmp_path / "repos" / f"{target_id}.git"


def _add_task(bare: Path, work: Path, task_id: str, title: str) -> None:
    """A human adds a (not ready) task to the backlog on main: the dashboard's content changes."""
    text = (work / BACKLOG).read_text() if work.exists() else None
    if text is None:
        commit_file(bare, work, "README.md", "widgets\n", "touch")  # clones the work tree
        text = (work / BACKLOG).read_text()
    title_yaml = title.replace("'", "''")
    entry = f"  - id: {task_id}\n    title: '{title_yaml}'\n    ready: false\n    allowed_paths: [docs/x.md]\n"
    text = text.replace("\nmetadata:", f"\n{entry}\nmetadata:", 1)
    commit_file(bare, work, BACKLOG, text, f"add {task_id}")


def _dashboard(dag_run) -> dict | None:
    record = evidence_record(dag_run)
    assert record["decision"] in ("run", "skip"), record  # the cycle decided, whatever the dashboard did
    return record["dashboard"]


def test_local_forge_dashboard_lifecycle(tmp_path, targets_dir):
    target_file, bare = _target(tmp_path, targets_dir, "dash_local")
    forge, work = LocalForge(bare), tmp_path / "work"

    first = _dashboard(run_cycle(target_file)[0])
    assert first["kind"] == "dashboard_created" and first["number"] == 1
    [issue] = forge.list_issues()
    assert issue.title == "Leviathan dashboard: dash_local" and issue.labels == (names.DASHBOARD_LABEL,)
    assert "Written by Leviathan" in issue.body and "`autonomy_disabled`" in issue.body
    assert "docs\\-quickstart" in issue.body
    assert hashlib.sha256(issue.body.encode()).hexdigest() == first["body_sha256"]
    stored = (bare / "leviathan" / "issues" / "1.json").read_bytes()

    # Same state: nothing is written (the record file is byte for byte what cycle 1 left).
    dag_run, _ = run_cycle(target_file)
    assert _dashboard(dag_run) is None
    assert evidence_record(dag_run)["ledger"]["dashboard"]["number"] == 1
    assert (bare / "leviathan" / "issues" / "1.json").read_bytes() == stored

    # The backlog changes: one update, with the hostile title inert.
    _add_task(bare, work, "hostile", HOSTILE_TITLE)
    updated = _dashboard(run_cycle(target_file)[0])
    assert updated["kind"] == "dashboard_updated" and updated["number"] == 1 and not updated["overwrote_edit"]
    body = forge.get_issue(1).body
    for raw in ("@octocat", "](", "https://", "#1 ", "www.evil"):
        assert raw not in body, raw
    assert "\\<img" in body and "<img" not in body.replace("\\<img", "")  # text, not a tag
    assert "hostile" in body and "not marked ready" in body

    # A human edits the body: nothing happens until the content changes, then it is overwritten.
    forge.update_issue(1, title="mine now", body="my notes")
    assert _dashboard(run_cycle(target_file)[0]) is None
    assert forge.get_issue(1).body == "my notes"  # Leviathan read nothing back, wrote nothing
    _add_task(bare, work, "second", "Second task")
    overwritten = _dashboard(run_cycle(target_file)[0])
    assert overwritten["kind"] == "dashboard_updated" and overwritten["overwrote_edit"] is True
    assert forge.get_issue(1).title == "Leviathan dashboard: dash_local" and "second" in forge.get_issue(1).body

    # A human closes it: respected (not reopened, not written), recorded; reopened: written again.
    forge.set_issue_state(1, "closed")
    before = forge.get_issue(1).body
    _add_task(bare, work, "third", "Third task")
    closed = _dashboard(run_cycle(target_file)[0])
    assert closed["kind"] == "dashboard_closed" and closed["number"] == 1
    assert forge.get_issue(1).state == "closed" and forge.get_issue(1).body == before
    assert _dashboard(run_cycle(target_file)[0]) is None  # same content, still closed: not even looked at
    forge.set_issue_state(1, "open")
    _add_task(bare, work, "fourth", "Fourth task")
    assert _dashboard(run_cycle(target_file)[0])["kind"] == "dashboard_updated"
    assert "fourth" in forge.get_issue(1).body

    # Deleted: a new one, once.
    forge.delete_issue(1)
    _add_task(bare, work, "fifth", "Fifth task")
    recreated = _dashboard(run_cycle(target_file)[0])
    assert recreated["kind"] == "dashboard_created" and recreated["number"] == 2 and recreated["replaced"] == 1
    assert [i.number for i in forge.list_issues()] == [2]
    assert _dashboard(run_cycle(target_file)[0]) is None


def test_dashboard_off_writes_nothing(tmp_path, targets_dir):
    target_file, bare = _target(tmp_path, targets_dir, "dash_off")
    target_file.write_text(target_file.read_text().replace("dashboard: true", "dashboard: false"))
    dag_run, _ = run_cycle(target_file)
    assert evidence_record(dag_run)["dashboard"] is None and LocalForge(bare).list_issues() == []


# -- GitHub --------------------------------------------------------------------------------------------

TOKEN = "ghp_DashSecret0123456789abcdefABCDEF"
REPO = "acme/widgets"


@pytest.fixture
def github_target(tmp_path, targets_dir, monkeypatch, request):
    target_id = "ghd_" + hashlib.sha256(request.node.name.encode()).hexdigest()[:10]
    autonomy = getattr(request, "param", False)
    with FakeGithub(TOKEN) as fake:
        target_file, bare = _target(tmp_path, targets_dir, target_id, autonomy=autonomy)
        fake.add_repo(REPO, bare)
        text = target_file.read_text().replace(f"target_repo_url: {bare}", f"target_repo_url: {fake.repo_url(REPO)}")
        target_file.write_text(text.replace("forge: local", "forge: github\nforge_conn_id: github_dash"))
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DASH", connection_env(fake))
        yield fake, target_file, bare
        assert fake.errors == [], "requests or responses outside the GitHub description"


def _issue_calls(fake: FakeGithub, since: int) -> list[tuple[str, str, int]]:
    return [(m, p, s) for m, p, s, _ in fake.requests[since:] if "/issues" in p and not p.endswith(("/labels",
            "/assignees", "/comments"))]


@pytest.mark.parametrize("github_target", [True], ids=["autonomy"], indirect=True)
def test_github_dashboard_once_then_only_on_change(github_target, tmp_path):
    fake, target_file, bare = github_target
    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    record = evidence_record(dag_run)
    assert record["dashboard"]["kind"] == "dashboard_created" and record["attempt"]["pr_number"] == 2
    repo = fake.repos[REPO]
    [issue] = repo.issues
    assert issue["number"] == 1 and issue["labels"] == [names.DASHBOARD_LABEL]
    assert "**Run**: task docs\\-quickstart, attempt 1" in issue["body"]
    assert [(m, p) for m, p, _ in _issue_calls(fake, 0)] == [("GET", f"/repos/{REPO}/issues"),
                                                            ("POST", f"/repos/{REPO}/issues")]

    # The PR is open now: the decision changed. One read for ticks (the dashboard has none yet), the write's
    # read of the same issue (304 from the ETag cache), and one write.
    mark = len(fake.requests)
    record = evidence_record(run_cycle(target_file)[0])
    assert record["reasons"] == ["open_pr_limit"] and record["dashboard"]["kind"] == "dashboard_updated"
    issue_1 = f"/repos/{REPO}/issues/1"
    assert _issue_calls(fake, mark) == [("GET", issue_1, 200), ("GET", issue_1, 304), ("PATCH", issue_1, 200)]
    assert "open: #2 task docs\\-quickstart" in fake.issue(REPO, 1)["body"]

    # Unchanged: no write, only the read for ticks (a full read once after a write, then a free 304).
    mark = len(fake.requests)
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"] is None and _issue_calls(fake, mark) == [("GET", issue_1, 200)]
    mark = len(fake.requests)
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"] is None and _issue_calls(fake, mark) == [("GET", issue_1, 304)]
    assert len(repo.issues) == 1

    # A human merges the PR: the dashboard lists it as merged.
    fake.human_merge(REPO, 2)
    mark = len(fake.requests)
    run_cycle(target_file)
    assert "merged: #2 task docs\\-quickstart" in fake.issue(REPO, 1)["body"]
    assert len(repo.issues) == 1 and [m for m, _, _ in _issue_calls(fake, mark)] == ["GET", "PATCH"]


def test_github_forge_errors_leave_no_duplicate_and_the_cycle_decides(github_target, tmp_path):
    fake, target_file, bare = github_target
    work = tmp_path / "work"
    error = {"message": "Service unavailable", "documentation_url": "https://docs.github.com/rest", "status": "503"}
    # The create gets a 503: its outcome is unknown, so Leviathan looks, finds nothing, and records why.
    fake.inject("POST", f"/repos/{REPO}/issues", 503, body=error)
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success", states
    assert record["reasons"] == ["autonomy_disabled"] and record["stopped_reason"] == "autonomy_disabled"
    failed = record["dashboard"]
    assert failed["kind"] == "dashboard_update_failed" and failed["error_code"] == "forge_error"
    assert "503" in failed["detail"] and "Traceback" not in failed["detail"] and TOKEN not in failed["detail"]
    assert fake.repos[REPO].issues == [] and record["ledger"]["dashboard"]["number"] is None

    # Next cycle (same content): the failed write is retried, exactly one issue.
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"]["kind"] == "dashboard_created" and len(fake.repos[REPO].issues) == 1

    # An update refused mid-way (403): recorded, body untouched, cycle decided; next change writes it.
    denied = {"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest",
              "status": "403"}
    fake.inject("PATCH", f"/repos/{REPO}/issues/1", 403, body=denied)
    before = fake.issue(REPO, 1)["body"]
    _add_task(bare, work, "later", "Later task")
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success" and record["reasons"] == ["autonomy_disabled"]
    assert record["dashboard"]["kind"] == "dashboard_update_failed" and "Issues: write" in record["dashboard"]["detail"]
    assert fake.issue(REPO, 1)["body"] == before
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"]["kind"] == "dashboard_updated" and "later" in fake.issue(REPO, 1)["body"]
    assert len(fake.repos[REPO].issues) == 1


def test_github_takes_over_its_own_lost_issue_never_a_strangers(github_target):
    """A crash between the create and the record leaves an issue Leviathan made: the next cycle takes it over
    (title and label match) instead of making a second one; a look-alike without the label is not adopted."""
    fake, target_file, _ = github_target
    title = f"Leviathan dashboard: {target_file.stem}"
    stranger = fake.human_create_issue(REPO, title, "I am not Leviathan", [])
    lost = fake.human_create_issue(REPO, title, "half-written", [names.DASHBOARD_LABEL])
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"]["kind"] == "dashboard_updated" and record["dashboard"]["number"] == lost
    assert fake.api_calls("POST") == [] and len(fake.repos[REPO].issues) == 2
    assert fake.issue(REPO, stranger)["body"] == "I am not Leviathan"
    assert "Written by Leviathan" in fake.issue(REPO, lost)["body"]


def test_github_closed_dashboard_is_not_reopened_and_a_deleted_one_is_replaced(github_target, tmp_path):
    fake, target_file, bare = github_target
    work = tmp_path / "work"
    run_cycle(target_file)
    fake.human_close_issue(REPO, 1)
    _add_task(bare, work, "t1", "One")
    mark = len(fake.requests)
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"]["kind"] == "dashboard_closed"
    assert [m for m, _, _ in _issue_calls(fake, mark)] == ["GET"] and fake.issue(REPO, 1)["state"] == "closed"

    fake.human_delete_issue(REPO, 1)
    _add_task(bare, work, "t2", "Two")
    record = evidence_record(run_cycle(target_file)[0])
    assert record["dashboard"]["kind"] == "dashboard_created" and record["dashboard"]["replaced"] == 1
    assert [i["number"] for i in fake.repos[REPO].issues] == [2]
