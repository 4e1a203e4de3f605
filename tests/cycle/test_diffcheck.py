"""The final-diff check on real git repositories, and the secret rule table."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from leviathan_lib.core.scope import Protected, Scope
from leviathan_lib.core.secrets_scan import RULES, scan_text
from leviathan_lib.cycle.diffcheck import DiffCheckError, Violation, check_final_diff
from leviathan_lib.git.runner import git_env

# Tests use the same closed git environment as the code, with no user or global config.
ENV = git_env({"HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": os.devnull})
DEV = Scope.of([".leviathan/", "docs/"])

# Credential-shaped strings are assembled at run time so this file never holds one verbatim.
FAKE = {
    "github_token": "ghp_" + "aB3d" * 9,
    "github_fine_grained_pat": "github_pat_" + "11ABCDEFG0" * 4,
    "aws_access_key_id": "AKIA" + "IOSFODNN7EXAMPLQ",
    "aws_secret_access_key": "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKQ",
    "private_key": "-----BEGIN " + "RSA PRIVATE KEY-----",
    "slack_token": "xoxb-" + "1234567890-abcdefABCDEF",
    "slack_webhook": "https://hooks.slack.com/services/" + "T0001/B0002/abcdefghijkl",
    "anthropic_api_key": "sk-ant-" + "api03-" + "Zx9" * 10,
    "openai_api_key": "sk-proj-" + "Qw7e" * 8,
    "google_api_key": "AIza" + "Sy" + "D3" * 16 + "q",
    "stripe_live_key": "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "url_credentials": "postgresql://airflow:" + "s3cr3tpw" + "@db.internal:5432/airflow",
    "password_assignment": 'password = "' + "hunter2-Hunter" + '"',
}
HARMLESS = [
    "The password must be changed every 90 days.",
    'password = "<your-password>"',
    'password: "${DB_PASSWORD}"',
    'api_key = "changeme"',
    "postgresql://user:${PW}@localhost/db",
    "https://github.com/iangreen74/radix.git",
    "Use ghp_ tokens only through the Airflow connection.",
    "scikit-learn and task-sk-management are fine",
    "-----BEGIN PUBLIC KEY-----",
    "AKIA is the prefix of AWS access key ids.",
]


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env=ENV, capture_output=True, input=input, check=True)
    return result.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    (repo / "docs").mkdir()
    (repo / "docs" / "guide.md").write_text("# Guide\n")
    (repo / "README.md").write_text("hello\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def commit(repo: Path) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


def codes(violations: list[Violation]) -> list[tuple[str, str | None]]:
    return [(v.code, v.path) for v in violations]


def test_clean_docs_change_passes(repo):
    (repo / "docs" / "guide.md").write_text("# Guide\n\nMore words.\n")
    (repo / ".leviathan").mkdir()
    (repo / ".leviathan" / "notes.md").write_text("notes\n")
    commit(repo)
    assert check_final_diff(repo, "HEAD~1", "HEAD", DEV) == []


def test_empty_diff_passes(repo):
    commit(repo)
    assert check_final_diff(repo, "HEAD~1", "HEAD", DEV) == []


@pytest.mark.parametrize("path", ["README.md", "docs2/a.md", "src/docs/a.md", "Docs/a.md"])
def test_paths_outside_scope(repo, path):
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("x\n")
    commit(repo)
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV)
    assert codes(violations) == [("scope_violation", path)]
    assert "outside the allowed prefixes" in violations[0].detail


def test_deleting_a_file_outside_scope_is_a_violation(repo):
    (repo / "README.md").unlink()
    commit(repo)
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [("scope_violation", "README.md")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ('docs/naïve "quoted" file.md', ["secret_detected"]),
        ("docs/tab\there.md", ["scope_violation", "secret_detected"]),  # control characters are never safe
    ],
)
def test_unusual_file_names_are_checked_by_their_real_path(repo, name, expected):
    (repo / name).write_text("token: " + FAKE["github_token"] + "\n")
    commit(repo)
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [(code, name) for code in expected]


def test_symlink_is_refused_even_inside_scope(repo):
    (repo / "docs" / "link.md").symlink_to("../README.md")
    commit(repo)
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [("symlink", "docs/link.md")]


def test_file_replaced_by_symlink_is_refused(repo):
    (repo / "docs" / "guide.md").unlink()
    (repo / "docs" / "guide.md").symlink_to("/etc/passwd")
    commit(repo)
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [("symlink", "docs/guide.md")]


def test_submodule_is_refused(repo):
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},docs/vendored")
    git(repo, "commit", "-q", "-m", "submodule")
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [("submodule", "docs/vendored")]


def test_mode_change_to_executable_is_refused(repo):
    git(repo, "update-index", "--chmod=+x", "docs/guide.md")
    git(repo, "commit", "-q", "-m", "chmod")
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV)
    assert codes(violations) == [("executable", "docs/guide.md")]
    assert "100644 -> 100755" in violations[0].detail


def test_new_executable_file_is_refused(repo):
    script = repo / "docs" / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    git(repo, "add", "docs/run.sh")
    git(repo, "update-index", "--chmod=+x", "docs/run.sh")
    git(repo, "commit", "-q", "-m", "script")
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV)
    assert codes(violations) == [("executable", "docs/run.sh")]
    assert "new executable file" in violations[0].detail


def test_total_size_limit(repo):
    (repo / "docs" / "a.md").write_text("a" * 600)
    (repo / "docs" / "b.md").write_text("b" * 600)
    commit(repo)
    assert check_final_diff(repo, "HEAD~1", "HEAD", DEV, max_total_bytes=1200) == []
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV, max_total_bytes=1199)
    assert codes(violations) == [("too_large", None)]
    assert violations[0].detail == "changed files total 1200 bytes, limit 1199"


@pytest.mark.parametrize("rule", sorted(FAKE))
def test_secret_in_added_content_is_detected_without_leaking_it(repo, rule):
    secret = FAKE[rule]
    (repo / "docs" / "guide.md").write_text(f"# Guide\n\nline two\n{secret}\n")
    commit(repo)
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV)
    assert codes(violations) == [("secret_detected", "docs/guide.md")]
    assert violations[0].detail == f"possible secret ({rule}) at line 4"
    assert secret not in violations[0].model_dump_json()


def test_secret_line_numbers_follow_the_new_file(repo):
    lines = [f"line {i}" for i in range(1, 21)]
    (repo / "docs" / "guide.md").write_text("\n".join(lines) + "\n")
    commit(repo)
    lines[9] = FAKE["aws_access_key_id"]
    lines.insert(15, FAKE["slack_token"])
    (repo / "docs" / "guide.md").write_text("\n".join(lines) + "\n")
    commit(repo)
    details = [v.detail for v in check_final_diff(repo, "HEAD~1", "HEAD", DEV)]
    assert details == [
        "possible secret (aws_access_key_id) at line 10",
        "possible secret (slack_token) at line 16",
    ]


def test_secret_only_in_removed_lines_is_not_reported(repo):
    (repo / "docs" / "guide.md").write_text("x\n" + FAKE["github_token"] + "\n")
    commit(repo)
    (repo / "docs" / "guide.md").write_text("x\n")
    commit(repo)
    assert check_final_diff(repo, "HEAD~1", "HEAD", DEV) == []


def test_added_line_that_looks_like_a_patch_header_is_still_scanned(repo):
    (repo / "docs" / "guide.md").write_text("# Guide\n++ " + FAKE["github_token"] + "\n")
    commit(repo)
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [("secret_detected", "docs/guide.md")]


def test_several_violations_are_all_reported(repo):
    (repo / "src").mkdir()
    (repo / "src" / "x.py").write_text(FAKE["password_assignment"] + "\n")
    (repo / "docs" / "l").symlink_to("guide.md")
    commit(repo)
    assert sorted(codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV))) == [
        ("scope_violation", "src/x.py"), ("secret_detected", "src/x.py"), ("symlink", "docs/l"),
    ]


def test_works_on_a_bare_repository(repo, tmp_path):
    (repo / "README.md").write_text("changed\n")
    commit(repo)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], env=ENV, check=True)
    assert codes(check_final_diff(bare, "HEAD~1", "HEAD", DEV)) == [("scope_violation", "README.md")]


def test_unknown_revision_fails_closed(repo):
    with pytest.raises(DiffCheckError):
        check_final_diff(repo, "no-such-rev", "HEAD", DEV)


def test_repository_config_cannot_hide_changes(repo):
    git(repo, "config", "diff.external", "/bin/true")
    git(repo, "config", "diff.noprefix", "true")
    (repo / "docs" / "guide.md").write_text(FAKE["github_token"] + "\n")
    commit(repo)
    assert codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV)) == [("secret_detected", "docs/guide.md")]


# --- the rule table on its own ---------------------------------------------------------------

def test_every_rule_has_a_sample():
    assert {rule.name for rule in RULES} == set(FAKE)


@pytest.mark.parametrize("rule", sorted(FAKE))
def test_rule_matches_its_sample_only(rule):
    assert [f.rule for f in scan_text(FAKE[rule])] == [rule]


@pytest.mark.parametrize("line", HARMLESS)
def test_harmless_lines_pass(line):
    assert scan_text(line) == []


def test_scan_text_reports_line_numbers():
    text = "a\n" + FAKE["github_token"] + "\nb\n" + FAKE["private_key"] + "\n"
    assert [(f.rule, f.line) for f in scan_text(text)] == [("github_token", 2), ("private_key", 4)]


# --- content is scanned as bytes, whatever git or .gitattributes think of it ------------------

@pytest.mark.parametrize("data", [
    b"\x00\x01binary\n" + FAKE["github_token"].encode() + b"\n",  # NUL: git calls it binary
    FAKE["github_token"].encode("utf-16-le"),  # UTF-16: every other byte is NUL
    b"\xff\xfe latin-1 \xe9" + FAKE["aws_access_key_id"].encode() + b"\n",  # not UTF-8, a letter glued on
], ids=["nul-byte", "utf-16", "latin-1"])
def test_secrets_in_binary_or_odd_encodings_are_found(repo, data):
    (repo / "docs" / "blob.bin").write_bytes(data)
    commit(repo)
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV)
    assert [v.code for v in violations] == ["secret_detected"]
    assert violations[0].path == "docs/blob.bin"


@pytest.mark.parametrize("attributes", ["*.md -diff\n", "*.md binary\n", "*.md diff=nothing\n"])
def test_gitattributes_cannot_hide_a_secret_and_is_itself_protected(repo, attributes):
    (repo / "docs" / ".gitattributes").write_text(attributes)
    (repo / "docs" / "guide.md").write_text("# Guide\n" + FAKE["slack_token"] + "\n")
    commit(repo)
    found = codes(check_final_diff(repo, "HEAD~1", "HEAD", DEV, protected=Protected()))
    assert found == [("protected_path", "docs/.gitattributes"), ("secret_detected", "docs/guide.md")]


def test_a_secret_already_in_the_file_is_not_new(repo):
    (repo / "docs" / "guide.md").write_text("# Guide\nexample: " + FAKE["aws_access_key_id"] + "\n")
    commit(repo)
    (repo / "docs" / "guide.md").write_text("# Guide, edited\nexample: " + FAKE["aws_access_key_id"] + "\n")
    commit(repo)
    assert check_final_diff(repo, "HEAD~1", "HEAD", DEV) == []


def test_a_secret_in_a_file_name_is_reported_redacted(repo):
    name = "docs/" + FAKE["github_token"] + ".md"
    (repo / name).write_text("fine\n")
    commit(repo)
    violations = check_final_diff(repo, "HEAD~1", "HEAD", DEV)
    expected = [("secret_detected", "possible secret (github_token) in the file name")]
    assert [(v.code, v.detail) for v in violations] == expected
    assert FAKE["github_token"] not in violations[0].model_dump_json()
    assert violations[0].path == "docs/[REDACTED:github_token].md"


def test_protected_paths_and_the_backlog_have_their_own_codes(repo):
    (repo / ".leviathan").mkdir()
    (repo / ".leviathan" / "backlog.yaml").write_text("tasks: []\n")
    (repo / ".leviathan" / "recipes.yaml").write_text("recipes: {}\n")
    (repo / "docs" / ".github" / "workflows").mkdir(parents=True)
    (repo / "docs" / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (repo / "docs" / ".gitmodules").write_text("\n")
    commit(repo)
    protected = Protected.of([".leviathan/recipes.yaml"])
    found = check_final_diff(repo, "HEAD~1", "HEAD", DEV, protected=protected, backlog_path=".leviathan/backlog.yaml")
    assert codes(found) == [
        ("backlog_edited", ".leviathan/backlog.yaml"), ("protected_path", ".leviathan/recipes.yaml"),
        ("protected_path", "docs/.github/workflows/ci.yml"), ("protected_path", "docs/.gitmodules"),
    ]


def test_a_tree_can_be_checked_without_a_commit(repo):
    (repo / "docs" / "guide.md").write_text(FAKE["github_token"] + "\n")
    git(repo, "add", "-A")
    tree = git(repo, "write-tree")
    assert codes(check_final_diff(repo, "HEAD", tree, DEV)) == [("secret_detected", "docs/guide.md")]
