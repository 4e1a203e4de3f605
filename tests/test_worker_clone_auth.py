"""A Kubernetes worker clones a private repository with a read-only token from a Secret, sent as a header."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from leviathan_lib.worker.backends.kubernetes import CLONE_TOKEN_ENV
from leviathan_lib.worker.workspace import CLONE_TOKEN_ENV as WORKER_CLONE_TOKEN_ENV
from tests.fake_github import FakeGithub
from tests.test_kpo import base_container, k8s_target, render
from tests.test_worker import make_spec, make_target_repo

READ_TOKEN = "read-only-test-token-0123456789"


def test_pod_gets_the_clone_token_only_by_secret_reference():
    _, without = render(k8s_target())
    assert CLONE_TOKEN_ENV not in {e["name"] for e in base_container(without)["env"]}
    _, manifest = render(k8s_target(worker_clone_secret="widgets-read-token"))
    [entry] = [e for e in base_container(manifest)["env"] if e["name"] == CLONE_TOKEN_ENV]
    assert entry == {"name": CLONE_TOKEN_ENV, "valueFrom": {"secretKeyRef": {
        "name": "widgets-read-token", "key": "token", "optional": True}}}
    assert CLONE_TOKEN_ENV == WORKER_CLONE_TOKEN_ENV


def _run_worker(spec, tmp_path, token: str | None) -> dict:
    spec_file, out = tmp_path / "spec.json", tmp_path / "result.json"
    spec_file.write_text(spec.model_dump_json())
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.getcwd(), "HOME": str(tmp_path)}
    if token:
        env[CLONE_TOKEN_ENV] = token
    ws = tmp_path / f"ws-{bool(token)}"
    ws.mkdir()
    subprocess.run([sys.executable, "-m", "leviathan_lib.worker", "--spec", str(spec_file), "--output", str(out),
                    "--workspace", str(ws)], env=env, check=True, capture_output=True, timeout=120)
    return json.loads(out.read_text())


def test_worker_clones_over_https_with_the_read_token_and_fails_clearly_without(tmp_path):
    bare, sha = make_target_repo(tmp_path)
    with FakeGithub(READ_TOKEN) as fake:
        fake.add_repo("acme/private", bare)
        spec = make_spec(bare, sha, repo_url=fake.repo_url("acme/private"))
        denied = _run_worker(spec, tmp_path, token=None)
        assert denied["outcome"] == "failed" and denied["error"]["code"] == "clone_failed"
        result = _run_worker(spec, tmp_path, token=READ_TOKEN)
        assert result["outcome"] == "succeeded", result["error"]
        assert result["changed_paths"] == ["docs/quickstart.md"]
        # The token never appears in the result document (URLs, transcript, errors).
        assert READ_TOKEN not in json.dumps(result) and READ_TOKEN not in json.dumps(denied)
        assert fake.errors == []
