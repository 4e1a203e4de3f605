"""Issues on the local forge (the dashboard's home there) and ``leviathan forge dashboard``, on real bare repos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import leviathan_lib
from leviathan_lib.core.names import DASHBOARD_LABEL
from leviathan_lib.forge import ForgeError, IssueNotFound, LocalForge
from leviathan_lib.forge.local_issues import MAX_ISSUE_BYTES
from leviathan_lib.git.runner import init_bare

PROJECT_ROOT = Path(leviathan_lib.__file__).resolve().parent.parent


@pytest.fixture
def forge(tmp_path: Path) -> LocalForge:
    return LocalForge(init_bare(tmp_path / "target.git"))


def leviathan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, cwd=PROJECT_ROOT, timeout=60)


def test_issues_are_durable_numbered_once_and_found_only_by_title_and_label(forge):
    first = forge.create_issue(title="Leviathan dashboard: t", body="one", label=DASHBOARD_LABEL)
    assert (first.number, first.state, first.labels) == (1, "open", (DASHBOARD_LABEL,))
    assert LocalForge(forge.path).get_issue(1) == first  # another process sees the same record
    assert forge.find_issue(title="Leviathan dashboard: t", label=DASHBOARD_LABEL) == first
    assert forge.find_issue(title="Leviathan dashboard: t", label="other") is None
    assert forge.find_issue(title="Leviathan dashboard: u", label=DASHBOARD_LABEL) is None

    updated = forge.update_issue(1, title="Leviathan dashboard: t", body="two")
    assert updated.body == "two" and forge.get_issue(1).body == "two"
    forge.set_issue_state(1, "closed")
    assert forge.find_issue(title="Leviathan dashboard: t", label=DASHBOARD_LABEL) is None  # closed ones are not
    assert forge.update_issue(1, title="x", body="three").state == "closed"  # an update never reopens

    forge.delete_issue(1)
    with pytest.raises(IssueNotFound, match="no issue #1"):
        forge.get_issue(1)
    assert forge.create_issue(title="again", body="", label=DASHBOARD_LABEL).number == 2  # 1 is never reused


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["symlink", "fifo", "huge", "invalid_json"])
def test_bad_issue_records_are_errors_naming_the_file_never_followed(forge, kind):
    forge.create_issue(title="t", body="b", label=DASHBOARD_LABEL)
    record = forge.path / "leviathan" / "issues" / "1.json"
    record.unlink()
    if kind == "symlink":
        record.symlink_to("/etc/passwd")
    elif kind == "fifo":
        os.mkfifo(record)
    elif kind == "huge":
        with open(record, "wb") as fh:
            fh.truncate(MAX_ISSUE_BYTES + 1)
    else:
        record.write_text('{"number": 1, ')
    with pytest.raises(ForgeError, match=str(record)) as info:
        forge.get_issue(1)
    assert "issue record" in str(info.value) and "root:" not in str(info.value)
    with pytest.raises(ForgeError):
        forge.update_issue(1, title="t", body="new")
    if kind == "symlink":
        assert Path("/etc/passwd").read_text().startswith("root:")  # never written through the link


def test_an_issue_body_over_the_cap_is_refused(forge):
    with pytest.raises(ForgeError, match="over"):
        forge.create_issue(title="t", body="x" * MAX_ISSUE_BYTES, label=DASHBOARD_LABEL)
    assert forge.list_issues() == []


def test_cli_prints_the_dashboard_and_a_human_closes_and_reopens_it(forge):
    forge.create_issue(title="someone's bug", body="not ours", label="bug")
    forge.create_issue(title="Leviathan dashboard: t", body="### Decision\n\n**Skip**", label=DASHBOARD_LABEL)
    repo = str(forge.path)
    shown = leviathan("forge", "dashboard", "--repo", repo)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("#2 [open] Leviathan dashboard: t\n") and "**Skip**" in shown.stdout
    assert "not ours" not in shown.stdout
    closed = leviathan("forge", "close-issue", "--repo", repo, "2")
    assert closed.returncode == 0 and closed.stdout.strip() == "issue #2 is closed"
    data = json.loads(leviathan("forge", "dashboard", "--repo", repo, "--json").stdout)
    assert [(i["number"], i["state"]) for i in data] == [(2, "closed")]
    assert leviathan("forge", "reopen-issue", "--repo", repo, "2").stdout.strip() == "issue #2 is open"
    missing = leviathan("forge", "close-issue", "--repo", repo, "9")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: no issue #9")
    assert "Traceback" not in missing.stderr
