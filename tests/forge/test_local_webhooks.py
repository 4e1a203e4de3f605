"""The local forge's webhook deliveries: GitHub's schemas, signed, posted to a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from leviathan_lib.core.webhooks import Change, read_delivery, repo_key, signature_valid
from leviathan_lib.forge import local_webhooks
from tests.forge.test_local import leviathan, open_pr
from tests.webhook_payloads import LOCAL_FORGE_WEBHOOKS, TEMPLATES, local_forge_templates, validate

SECRET = "local-forge-secret"


class Receiver:
    """A plain HTTP server that keeps every delivery (headers, body) and answers 202."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/leviathan/webhooks/github"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_the_shipped_templates_are_the_shared_schemas_filled():
    assert TEMPLATES.read_text(encoding="utf-8") == local_forge_templates(), "run: python -m tests.webhook_payloads"


@pytest.mark.parametrize("webhook", LOCAL_FORGE_WEBHOOKS)
def test_every_delivery_the_local_forge_builds_is_valid_and_names_its_repository(tmp_path, webhook):
    bare = tmp_path / "demo.git"
    bare.mkdir()
    data = local_webhooks.build(webhook, bare, branch="agent/t/1", number=3, merged=True)
    validate(webhook, data)
    change = read_delivery(local_webhooks.EVENTS[webhook], data)
    assert isinstance(change, Change) and repo_key(str(bare)) in change.keys, change


def test_human_actions_on_the_local_forge_post_signed_deliveries(target, forge, receiver, monkeypatch):
    target.commit("agent/x/1", {"docs/new.md": "merged by a human\n"})
    target.commit("agent/x/2", {"docs/other.md": "closed\n"})
    open_pr(forge, "agent/x/1")
    open_pr(forge, "agent/x/2")
    repo = str(target.bare)
    monkeypatch.setenv(local_webhooks.URL_ENV, receiver.url)
    monkeypatch.setenv(local_webhooks.SECRET_ENV, SECRET)
    steps = [(("comment", "2", "--as", "alice", "--body", "/leviathan retry"), ["issue_comment"]),
             (("review", "2", "--as", "alice", "--approve"), ["pull_request_review"]),
             (("status", "2", "--context", "ci/tests", "--state", "success"), ["check_suite"]),
             (("merge", "1"), ["pull_request", "push"]), (("close", "2"), ["pull_request"])]
    for args, events in steps:
        before = len(receiver.deliveries)
        done = leviathan("forge", args[0], "--repo", repo, *args[1:])
        assert done.returncode == 0, done.stderr
        assert f"webhook: {events[0]} 202" in done.stdout
        sent = receiver.deliveries[before:]
        assert [h["x-github-event"] for h, _ in sent] == events
        for headers, body in sent:
            assert signature_valid(SECRET, body, headers["x-hub-signature-256"])
            change = read_delivery(headers["x-github-event"], json.loads(body))
            assert isinstance(change, Change) and repo_key(repo) in change.keys, change
    ids = [h["x-github-delivery"] for h, _ in receiver.deliveries]
    assert len(set(ids)) == len(ids) == 6
    merged = json.loads(receiver.deliveries[3][1])
    assert merged["pull_request"]["merged"] is True and merged["pull_request"]["head"]["ref"] == "agent/x/1"


def test_without_a_receiver_configured_nothing_is_sent_and_a_down_one_is_only_reported(target, forge, monkeypatch):
    target.commit("agent/x/1", {"docs/new.md": "x\n"})
    open_pr(forge, "agent/x/1")
    monkeypatch.delenv(local_webhooks.URL_ENV, raising=False)
    quiet = leviathan("forge", "close", "--repo", str(target.bare), "1")
    assert quiet.returncode == 0 and "webhook" not in quiet.stdout
    monkeypatch.setenv(local_webhooks.URL_ENV, "http://127.0.0.1:9/leviathan/webhooks/github")  # nothing listens
    monkeypatch.setenv(local_webhooks.SECRET_ENV, SECRET)
    down = leviathan("forge", "comment", "--repo", str(target.bare), "1", "--as", "alice", "--body", "hi")
    assert down.returncode == 0, down.stderr
    assert "webhook: issue_comment not sent (URLError" in down.stdout


def test_a_human_git_push_to_a_repository_with_the_hook_posts_one_push_per_branch(tmp_path, receiver, monkeypatch):
    """A person's ``git push`` runs the hook; Leviathan's own git never does (hooks off)."""
    import os
    import subprocess

    from leviathan_lib.demo import create_demo_repo
    from leviathan_lib.git.runner import run_git

    bare = create_demo_repo(tmp_path / "hooked.git")
    local_webhooks.install_hook(bare)
    monkeypatch.setenv(local_webhooks.URL_ENV, receiver.url)
    monkeypatch.setenv(local_webhooks.SECRET_ENV, SECRET)
    work = tmp_path / "work"
    run_git(["clone", "--quiet", str(bare), str(work)])
    (work / "docs").mkdir(exist_ok=True)
    (work / "docs" / "pushed.md").write_text("a human's push\n", encoding="utf-8")
    run_git(["add", "-A"], cwd=work)
    run_git(["-c", "user.name=h", "-c", "user.email=h@example.invalid", "commit", "--quiet", "-m", "push"], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:refs/heads/agent/t/9"], cwd=work)  # Leviathan's git: no hook
    assert receiver.deliveries == []
    pushed = subprocess.run(["git", "push", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/agent/t/1"], cwd=work,
                            env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: webhook: push 202" in pushed.stderr  # git shows the hook's output
    assert [h["x-github-event"] for h, _ in receiver.deliveries] == ["push", "push"]
    branches = []
    for headers, body in receiver.deliveries:
        assert signature_valid(SECRET, body, headers["x-hub-signature-256"])
        data = json.loads(body)
        validate("push", data)
        change = read_delivery("push", data)
        assert isinstance(change, Change) and repo_key(str(bare)) in change.keys, change
        branches.append(change.branch)
    assert sorted(branches) == ["agent/t/1", "main"]
