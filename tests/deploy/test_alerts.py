"""Leviathan's alert rules: promtool checks and unit-tests them (k8s/alerts/)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.k8s_support import ROOT

ALERTS = ROOT / "k8s" / "alerts"
RULES = ALERTS / "leviathan-rules.yaml"
RULE_TESTS = ALERTS / "leviathan-rules.test.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # the test command installs it: a missing promtool is a broken setup, not a skip
        pytest.fail("promtool not found on PATH: install Debian's `prometheus` package (apt-get install prometheus)")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_promtool_checks_the_rules(promtool):
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_rule_unit_tests_pass(promtool):
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_broken_rule(promtool, tmp_path):
    """The unit tests can fail: without the paused/switch-off guard, the 'lagging' target would fire."""
    rules = RULES.read_text()
    guard = "unless on (target_id) (max by (target_id) (leviathan_cycle_expected) == 0)"
    assert guard in rules
    (tmp_path / RULES.name).write_text(rules.replace(guard, ""))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run(promtool, "test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "not stale - a paused target and a switched-off fleet" in result.stdout + result.stderr
