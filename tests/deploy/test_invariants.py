"""``leviathan invariants``: clean on the repository, and each rule fails on its seeded fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leviathan_lib.deploy import invariants
from tests.k8s_support import CHART, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "invariants"


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    code = ("import sys, argparse; from leviathan_lib.cli import invariants as c; "
            "p = argparse.ArgumentParser(); c.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); "
            "sys.exit(a.func(a))")
    return subprocess.run([sys.executable, "-c", code, "invariants", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_repository_is_clean():
    """The CI check: k8s/, the chart rendered with both values files, and every repository file."""
    result = _cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "invariants: clean"


def test_clean_fixture_passes():
    result = _cli(str(FIXTURES / "clean-worker-pod.yaml"))
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("rule", [
    invariants.RULE_NAMESPACE, invariants.RULE_PULL_POLICY, invariants.RULE_COMMAND,
    invariants.RULE_SECRET, invariants.RULE_WORKER_SECURITY,
])
def test_each_rule_fails_on_its_fixture(rule):
    result = _cli(str(FIXTURES / f"{rule}.yaml"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines and all(f": {rule}: " in line for line in lines), lines
    assert all(line.startswith(f"tests/fixtures/invariants/{rule}.yaml") for line in lines)


def test_secret_violation_never_prints_the_secret():
    result = _cli(str(FIXTURES / "literal-secret.yaml"))
    assert "ghp_" not in result.stdout + result.stderr
    assert "matches secret rule github_token" in result.stdout


def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for part in ("k8s", "leviathan_lib"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", str(root)], check=True, env=env)
    return root


def test_secret_committed_anywhere_in_the_repository_fails(tmp_path):
    root = _copy_repo(tmp_path)
    (root / "notes.md").write_text("deploy key: " + "AKIA" + "Q" * 16 + "\n")
    found = invariants.check_repository(root, invariants.load_allowlist(root))
    assert [(v.file, v.rule, v.detail) for v in found] == [
        ("notes.md:1", "literal-secret", "matches secret rule aws_access_key_id")]
    result = _cli("--root", str(root), "--chart", str(CHART), "--no-chart")
    assert result.returncode == 1 and "notes.md:1: -: literal-secret" in result.stdout


def test_values_file_with_a_secret_fails_and_rendered_chart_is_checked(tmp_path):
    root = _copy_repo(tmp_path)
    values = root / "k8s" / "helm" / "values-kind.yaml"
    # A password typed into the values: the file scan and the rendered Secret both catch it.
    values.write_text(values.read_text() + 'fernetKeySecretName: null\nfernetKey: "' + "s3cr3t" * 4 + '"\n')
    found = invariants.check_default(root, CHART, repository=False)
    rules = {(v.file.split(":")[0], v.rule) for v in found}
    assert ("k8s/helm/values-kind.yaml", "literal-secret") in rules
    assert any(v.file.startswith("chart[kind]:") and "Secret carries data" in v.detail for v in found)


def test_rendered_chart_namespace_and_pull_policy_are_checked(tmp_path):
    root = _copy_repo(tmp_path)
    values = root / "k8s" / "helm" / "values-kind.yaml"
    values.write_text(values.read_text() + "images:\n  airflow:\n    pullPolicy: Always\n"
                      "multiNamespaceMode: true\n")
    found = invariants.check_default(root, CHART, repository=False)
    assert any(v.rule == "local-image-pull-policy" and v.file.startswith("chart[kind]:") for v in found)
    assert any(v.rule == "namespace" and "cluster-scoped" in v.detail for v in found)


def test_allowlist_needs_reason(tmp_path):
    root = _copy_repo(tmp_path)
    (root / invariants.ALLOWLIST).write_text("- path: x\n  rule: '*'\n")
    result = _cli("--root", str(root), "--no-chart")
    assert result.returncode == 1 and "expected a mapping with path, rule and reason" in result.stderr


def test_unreadable_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    with pytest.raises(invariants.ValidationFailed, match="bad.yaml: not valid YAML"):
        invariants.check_paths([bad], tmp_path)
