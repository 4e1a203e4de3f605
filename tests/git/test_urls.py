"""The one repository-URL parser, and every former parser now agreeing with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from leviathan_lib.contracts.attempt import AttemptSpec
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.git_refs import check_branch_name
from leviathan_lib.forge.base import ForgeError
from leviathan_lib.forge.github import parse_repo_url as github_owner_repo
from leviathan_lib.git.auth import origin_of
from leviathan_lib.git.urls import RepoUrlError, parse_repo_url

ACCEPTED = [
    # (url, kind, host, port, user, path, owner_name)
    ("https://github.com/acme/widgets.git", "https", "github.com", None, None, "/acme/widgets.git",
     ("acme", "widgets")),
    ("http://127.0.0.1:8080/acme/widgets", "http", "127.0.0.1", 8080, None, "/acme/widgets", ("acme", "widgets")),
    ("https://[::1]:443/a/b", "https", "[::1]", 443, None, "/a/b", ("a", "b")),
    ("ssh://git@example.com:2222/acme/w.git", "ssh", "example.com", 2222, "git", "/acme/w.git", ("acme", "w")),
    ("ssh://example.com/acme/w", "ssh", "example.com", None, None, "/acme/w", ("acme", "w")),
    ("git@github.com:acme/widgets.git", "scp", "github.com", None, "git", "acme/widgets.git", ("acme", "widgets")),
    ("file:///srv/repos/w.git", "file", None, None, None, "/srv/repos/w.git", None),
    ("file://localhost/srv/w.git", "file", None, None, None, "/srv/w.git", None),
    ("/srv/repos/w.git", "local", None, None, None, "/srv/repos/w.git", None),
    ("repos/w.git", "local", None, None, None, "repos/w.git", None),
    ("../w.git", "local", None, None, None, "../w.git", None),
]  # fmt: skip

REJECTED = [
    ("", "must not be empty"),
    ("--upload-pack=touch /tmp/x", "must not start with '-'"),
    ("-u", "must not start with '-'"),
    ("ext::sh -c touch% /tmp/x", "'<transport>::'"),
    ("fd::3", "'<transport>::'"),
    ("transport::https://example.com/a/b", "'<transport>::'"),
    ("https://example.com/a/b\n", "control characters"),
    ("https://example.com/a/\x7fb", "control characters"),
    ("https://example.com/a b", "whitespace"),
    ("https://example.com/a\u00a0b", "whitespace"),
    ("https://user:pass@example.com/a/b", "credentials"),
    ("https://ghp_token@example.com/a/b", "credentials"),
    ("http://x-access-token:t@127.0.0.1/a/b", "credentials"),
    ("ssh://git:pw@example.com/a/b", "credentials"),
    ("git://example.com/a/b", "unsupported scheme"),
    ("ftp://example.com/a/b", "unsupported scheme"),
    ("https://example.com", "repository path"),
    ("https://example.com/", "repository path"),
    ("https://-oProxyCommand=x/a/b", "must name a host"),
    ("https://example.com:0/a/b", "invalid port"),
    ("https://example.com:99999/a/b", "invalid port"),
    ("https://example.com/a/b?x=1", "query"),
    ("https://example.com/a/b#frag", "query"),
    ("file://otherhost/srv/x", "local path"),
    ("file://", "absolute path"),
    ("example.com:acme/w.git", "ambiguous"),
    ("user:pw@host/path", "ambiguous"),
    ("git@-oProxyCommand=x:a/b", "ambiguous"),
    ("git@example.com:-a/b", "must not start with '-'"),
    ("tok@example.com/a/b", "credentials"),
]


@pytest.mark.parametrize(("url", "kind", "host", "port", "user", "path", "owner_name"), ACCEPTED)
def test_accepted_urls_are_classified(url, kind, host, port, user, path, owner_name):
    parsed = parse_repo_url(url)
    assert (parsed.kind, parsed.host, parsed.port, parsed.user, parsed.path) == (kind, host, port, user, path)
    assert parsed.owner_name == owner_name
    assert parsed.is_local == (kind in ("file", "local"))
    assert parsed.raw == url


@pytest.mark.parametrize(("url", "reason"), REJECTED)
def test_rejected_urls_say_why(url, reason):
    with pytest.raises(RepoUrlError) as info:
        parse_repo_url(url)
    assert reason in str(info.value)
    assert "pass" not in str(info.value) and "ghp_token" not in str(info.value)  # never echoes the value


def test_origin_is_the_http_scope_only():
    assert parse_repo_url("https://github.com/a/b.git").origin == "https://github.com/"
    assert parse_repo_url("http://127.0.0.1:8080/a/b").origin == "http://127.0.0.1:8080/"
    assert parse_repo_url("git@github.com:a/b").origin is None
    assert origin_of("https://github.com/a/b.git") == "https://github.com/"
    for bad in ("git@github.com:a/b", "https://u:p@github.com/a/b", "/srv/x.git"):
        with pytest.raises(ValueError):
            origin_of(bad)


def _config_accepts(url: str) -> bool:
    try:
        TargetConfig.model_validate({"target_id": "t", "target_repo_url": url})
    except ValidationError:
        return False
    return True


def _contract_accepts(url: str) -> bool:
    base = {"spec_version": 1, "target_id": "t", "repo_url": url, "commit_sha": "a" * 40, "task": {},
            "allowed_path_prefixes": ["docs/"], "executor": {"kind": "recipe", "recipe": "x"}, "attempt": 1,
            "timeout_seconds": 10}  # fmt: skip
    try:
        AttemptSpec.model_validate(base)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("url", [row[0] for row in ACCEPTED] + [row[0] for row in REJECTED])
def test_config_contract_and_github_forge_agree_with_the_parser(url):
    try:
        parsed = parse_repo_url(url)
    except RepoUrlError:
        parsed = None
    assert _config_accepts(url) == (parsed is not None)
    assert _contract_accepts(url) == (parsed is not None)
    github_ok = parsed is not None and parsed.kind in ("https", "http") and parsed.owner_name is not None
    try:
        assert github_owner_repo(url) == parsed.owner_name  # type: ignore[union-attr]
        assert github_ok
    except ForgeError:
        assert not github_ok


def test_relative_local_paths_resolve_against_the_config_file(tmp_path):
    config = TargetConfig.model_validate({"target_id": "t", "target_repo_url": "repos/w.git"})
    assert config.repo_location(tmp_path / "t.yaml") == str((tmp_path / "repos" / "w.git").resolve())
    for url in ("git@github.com:a/b.git", "https://github.com/a/b", "/srv/x.git", "file:///srv/x.git"):
        same = TargetConfig.model_validate({"target_id": "t", "target_repo_url": url})
        assert same.repo_location(Path("/elsewhere/t.yaml")) == url


@pytest.mark.parametrize("name", ["main", "release/1.2", "agent/docs-x/1", "feature_x", "v1.0"])
def test_branch_names_accepted(name):
    assert check_branch_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-x", "--upload-pack=x", "a:b", "+main", "a..b", "a//b", "a/", ".hidden", "a/.b", "x.lock",
             "a.", "HEAD", "a b", "a~1", "a^", "a*", "a@{1}", "x" * 201],
)
def test_branch_names_rejected(name):
    with pytest.raises(ValueError):
        check_branch_name(name)
