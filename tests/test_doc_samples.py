"""The rules tests/e2e/test_scheduler.py checks the quickstart's sample outputs by (tests/doc_samples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_samples import DOC_DIR, DOC_PORT, Matcher, Sample, samples, transcript

QUICKSTART = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"

DOC = """\
Unpaused and triggered leviathan__demo: run manual__2026-11-27T12:01:06.262114+00:00
Read main@570b113f19dd. Decision: run (stopped: pr_opened)
  check open_prs         pass  0 open agent/ PR(s), limit 1
…
Airflow UI: http://127.0.0.1:18125  (login: admin / …)
  Health: metadatabase healthy"""

REAL = """\
Started Airflow api-server, scheduler
Unpaused and triggered leviathan__demo: run manual__2026-12-06T19:41:20+00:00
Read main@aa4134e983c3. Decision: run (stopped: pr_opened)
  check open_prs          pass  0 open agent/ PR(s), limit 1
  check sandbox          pass  recipe steps run in: bwrap
Airflow UI: http://127.0.0.1:40123  (login: admin / s3cret)
  Health: metadatabase healthy
Airflow keeps running
"""


def test_every_sample_kind_is_in_the_quickstart_and_its_transcripts_parse():
    found = samples(QUICKSTART)
    assert {s.kind for s in found} == {"demo", "console", "plan-log"}
    commands = [command for s in found if s.kind == "console" for command, _ in transcript(s)]
    assert any(f"demo --dir {DOC_DIR} --port {DOC_PORT} --exit" in c for c in commands)
    assert any("evidence --cycle scheduled__" in c for c in commands)


def test_times_ids_folder_port_and_elisions_may_differ_but_lines_may_not():
    matcher = Matcher(real_dir="/tmp/x", real_port="40123")
    matcher.match(Sample("demo", DOC, 1), REAL, whole=False)
    assert matcher.bound["570b113f19dd"] == "aa4134e983c3"
    assert matcher.command("evidence --cycle manual__2026-11-27T12:01:06.262114+00:00 --dir /tmp/docs2") == (
        "evidence --cycle manual__2026-12-06T19:41:20+00:00 --dir /tmp/x")
    with pytest.raises(AssertionError, match="does not match"):
        matcher.match(Sample("demo", DOC, 1), REAL, whole=True)  # the whole output has more lines
    stale = REAL.replace("check open_prs", "check open_pull_requests")
    with pytest.raises(AssertionError, match="does not match"):
        Matcher(real_dir="/tmp/x", real_port="40123").match(Sample("demo", DOC, 1), stale, whole=False)


def test_a_console_sample_is_commands_and_what_each_prints():
    sample = Sample("console", "$ leviathan forge list\n#  STATE\n$ git branch\n* main", 1)
    assert transcript(sample) == [("leviathan forge list", "#  STATE"), ("git branch", "* main")]
    with pytest.raises(AssertionError, match="starts with a `\\$ ` command"):
        transcript(Sample("console", "output first", 1))
