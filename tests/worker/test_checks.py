"""The repository's own checks in the worker: real git repositories, the real bubblewrap sandbox.

Each test builds a target whose recipes file declares checks, runs one attempt and reads what the result
says: each check's base run and its run on the change (exit code, duration, the redacted tail of its
output), and the attempt's outcome and code.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from leviathan_lib.contracts.attempt import AttemptResult, AttemptSpec, CheckResult
from leviathan_lib.worker.attempt import run_attempt
from leviathan_lib.worker.checks import CACHE_ENV, TAIL_BYTES, BaseCache, TailBuffer
from tests.worker.backends.test_local import wait_marked_gone
from tests.worker.test_attempt import git

ROOT = Path(__file__).resolve().parents[2]
FAKE_TOKEN = "ghp_" + "Zq9x" * 9  # a github_token shape, built at run time

#: Checks of the test repository, by name: a Python program run as ``python3 .leviathan/checks/<name>.py``.
CHECKS = {
    # Fails when a page under docs/ holds a TODO marker.
    "lint": """\
        import sys
        from pathlib import Path
        bad = [str(p) for p in sorted(Path("docs").rglob("*.md")) if "TODO" in p.read_text()]
        print("lint:", ", ".join(bad) or "clean")
        sys.exit(1 if bad else 0)
        """,
    # Fails when docs/b.md exists.
    "no-b": """\
        import sys
        from pathlib import Path
        sys.exit(1 if Path("docs/b.md").exists() else 0)
        """,
    # Hangs, with a child that would outlive it: both carry MARK on their command line.
    "hang": """\
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "MARK"])
        print("hanging", flush=True)
        time.sleep(300)
        """,
    "flood": """\
        import sys
        block = b"".join(b"line %07d of a long output\\n" % i for i in range(40000))
        for _ in range(100 * 2**20 // len(block) + 1):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b"the last line\\n")
        """,
    "tidy": """\
        from pathlib import Path
        Path("docs/formatted.md").write_text("# reformatted by a check\\n")
        """,
    "net": """\
        import socket, sys
        try:
            socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
        except OSError as exc:
            print("network refused:", exc)
            sys.exit(1)
        print("connected")
        """,
    "hostile": """\
        import sys
        print("<img src=x onerror=alert(1)> **bold** [link](https://evil.example) @admin")
        print("token " + "ghp_" + "Zq9x" * 9)
        sys.exit(1)
        """,
}

RECIPES = """\
recipes:
  write-a:
    command: ["python3", "-c", "open('docs/a.md', 'w').write('# A\\\\n')"]
  write-todo:
    command: ["python3", "-c", "open('docs/a.md', 'w').write('# A\\\\n\\\\nTODO: more\\\\n')"]
  write-b:
    command: ["python3", "-c", "open('docs/b.md', 'w').write('# B\\\\n')"]
"""


def checks_yaml(port: int = 9, timeout: int = 60) -> str:
    lines = ["checks:"]
    for name in CHECKS:
        argv = ["python3", f".leviathan/checks/{name}.py"] + ([str(port)] if name == "net" else [])
        lines += [f"  {name}:", "    steps:", f"      - {json.dumps(argv)}",
                  f"    timeout_seconds: {2 if name == 'hang' else timeout}"]
    return "\n".join(lines) + "\n"


def make_repo(tmp_path: Path, *, index: str = "# Docs\n", port: int = 9, mark: str = "") -> tuple[Path, str]:
    """A bare target repository with the recipes and checks above; (url, pinned sha)."""
    work, bare = tmp_path / "src", tmp_path / "target.git"
    git("-c", "init.defaultBranch=main", "init", "--quiet", str(work))
    files = {".leviathan/recipes.yaml": RECIPES + checks_yaml(port), "docs/index.md": index}
    files.update({f".leviathan/checks/{name}.py": textwrap.dedent(code).replace("MARK", mark or "no-mark")
                  for name, code in CHECKS.items()})
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "target", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


def commit(tmp_path: Path, repo: Path, path: str, text: str) -> str:
    """A human commits ``path`` to the target's main branch; the new tip."""
    work = tmp_path / "src"
    (work / path).write_text(text)
    git("commit", "--quiet", "-am", f"edit {path}", cwd=work)
    git("push", "--quiet", str(repo), "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def spec(repo: Path, sha: str, recipe: str, checks: list[str], **check_options) -> AttemptSpec:
    return AttemptSpec.model_validate({
        "spec_version": 1, "target_id": "t", "repo_url": str(repo), "commit_sha": sha,
        "task": {"id": "docs-a", "title": "Write a page", "ready": True, "allowed_paths": ["docs/"], "recipe": recipe},
        "allowed_path_prefixes": ["docs/"], "executor": {"kind": "recipe", "recipe": recipe},
        "attempt": 1, "timeout_seconds": 60, "checks": {"names": checks, **check_options},
    })  # fmt: skip


def attempt(tmp_path: Path, the_spec: AttemptSpec, name: str = "ws") -> AttemptResult:
    return run_attempt(the_spec, tmp_path / name)


def runs(result: AttemptResult, phase: str) -> dict[str, CheckResult]:
    return {c.name: c for c in result.checks if c.phase == phase}


def test_a_passing_check_is_recorded_on_the_pinned_commit_and_on_the_change(tmp_path):
    repo, sha = make_repo(tmp_path)
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["lint"]))
    assert result.outcome == "succeeded", result.error
    assert result.changed_paths == ["docs/a.md"] and result.checks_red_at_base == []
    base, change = runs(result, "base")["lint"], runs(result, "change")["lint"]
    assert (base.passed, base.exit_code, base.output_tail) == (True, 0, "lint: clean\n")
    assert (change.passed, change.exit_code, change.cached) == (True, 0, False)
    assert 0 < change.duration_seconds < 30 and change.output_bytes == len("lint: clean\n")


def test_a_failing_check_fails_the_attempt_with_its_output_and_no_patch(tmp_path):
    repo, sha = make_repo(tmp_path)
    result = attempt(tmp_path, spec(repo, sha, "write-todo", ["lint"]))
    assert (result.outcome, result.error.code) == ("failed", "checks_failed")
    assert result.error.message == "lint exited with 1" and result.patch == ""
    change = runs(result, "change")["lint"]
    assert (change.passed, change.exit_code, change.output_tail) == (False, 1, "lint: docs/a.md\n")
    assert runs(result, "base")["lint"].passed


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_a_hanging_check_is_killed_at_its_timeout_with_what_it_started(tmp_path, mode):
    """In bwrap the sandbox goes as a whole; unsandboxed (the opt-out, the pod) the process group is killed."""
    mark = f"leviathan-check-hang-{uuid.uuid4().hex}"
    repo, sha = make_repo(tmp_path, mark=mark)
    started = time.monotonic()
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["hang"]).model_copy(update={"sandbox": mode}))
    # It hangs on the pinned commit already: killed at its timeout_seconds (2), and so red there.
    assert (result.outcome, result.error.code) == ("checks_red_at_base", "checks_red_at_base")
    base = runs(result, "base")["hang"]
    assert base.timed_out and base.exit_code is None and not base.passed and base.output_tail == "hanging\n"
    assert 2 <= base.duration_seconds < 6 and time.monotonic() - started < 30
    assert "hang ran past its timeout" in result.error.message
    wait_marked_gone(mark)  # its child went with it: the whole sandbox, process group and all


def test_a_check_that_hangs_only_on_the_change_is_check_timeout(tmp_path):
    repo, _ = make_repo(tmp_path)
    slow = "import time\nfrom pathlib import Path\nif Path('docs/a.md').exists():\n    time.sleep(300)\n"
    sha = commit(tmp_path, repo, ".leviathan/checks/hang.py", slow)
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["hang"]))
    assert (result.outcome, result.error.code) == ("failed", "check_timeout"), result.error
    assert "hang ran past its timeout" in result.error.message and result.patch == ""
    change = runs(result, "change")["hang"]
    assert change.timed_out and change.exit_code is None and 2 <= change.duration_seconds < 6
    assert runs(result, "base")["hang"].passed


def _max_rss_kib(tmp_path: Path, checks: list[str], name: str) -> tuple[int, dict]:
    """Run one attempt in a fresh interpreter; its peak RSS (KiB) and its result."""
    the_spec = spec(*make_repo(tmp_path / name), "write-a", checks)
    code = ("import json, resource, sys; from pathlib import Path;"
            "from leviathan_lib.worker.attempt import run_attempt;"
            "from leviathan_lib.contracts.attempt import AttemptSpec;"
            "r = run_attempt(AttemptSpec.model_validate_json(sys.argv[1]), Path(sys.argv[2]));"
            "print(json.dumps({'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
            " 'result': r.model_dump(mode='json')}))")
    proc = subprocess.run([sys.executable, "-c", code, the_spec.model_dump_json(), str(tmp_path / name / "ws")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return out["rss"], out["result"]


def test_a_check_printing_100_mb_keeps_only_its_tail_in_bounded_memory(tmp_path):
    quiet_rss, _ = _max_rss_kib(tmp_path, ["lint"], "quiet")
    flood_rss, result = _max_rss_kib(tmp_path, ["flood"], "flood")
    assert result["outcome"] == "succeeded", result["error"]
    change = [c for c in result["checks"] if c["phase"] == "change"][0]
    assert change["output_bytes"] > 100 * 2**20
    tail = change["output_tail"]
    assert len(tail.encode()) <= TAIL_BYTES and tail.endswith("of a long output\nthe last line\n")
    assert tail.startswith("line ")  # whole lines only: the partial first line was dropped
    # The worker streamed 200 MB (base and change) through a 4 KB tail: its peak memory did not grow with it.
    print(f"peak RSS: {quiet_rss} KiB quiet, {flood_rss} KiB with 2 x 100 MB of check output")
    assert flood_rss - quiet_rss < 20 * 1024, (quiet_rss, flood_rss)


def test_a_check_that_changes_the_checkout_fails_the_attempt(tmp_path):
    repo, sha = make_repo(tmp_path)
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["tidy"], on_red_at_base="deliver_with_warning"))
    assert (result.outcome, result.error.code) == ("failed", "checks_modified_tree")
    assert result.error.message == "tidy changed files in the checkout: a check never adds to a change"
    assert runs(result, "change")["tidy"].modified_tree and result.patch == ""
    # On the pinned commit the same check counted as red there, and the checkout was put back before the recipe.
    assert runs(result, "base")["tidy"].modified_tree and result.checks_red_at_base == ["tidy"]
    assert result.changed_paths == ["docs/a.md"]  # the recipe's change only, never the check's file


def test_a_check_trying_the_network_gets_the_sandboxs_refusal(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        repo, sha = make_repo(tmp_path, port=server.getsockname()[1])
        result = attempt(tmp_path, spec(repo, sha, "write-a", ["net"]))
    finally:
        stop.set()
        thread.join()
        server.close()
    assert result.outcome == "checks_red_at_base"  # it fails on the pinned commit already: no network there
    assert "network refused: [Errno 111] Connection refused" in runs(result, "base")["net"].output_tail
    assert accepted == []


def test_red_at_base_skips_the_attempt_without_running_the_executor(tmp_path):
    repo, sha = make_repo(tmp_path, index="# Docs\n\nTODO: write them\n")
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["lint", "no-b"]))
    assert (result.outcome, result.error.code) == ("checks_red_at_base", "checks_red_at_base")
    assert result.error.message.startswith(f"the repository's own checks already fail on {sha[:12]}")
    assert "lint exited with 1" in result.error.message and result.checks_red_at_base == ["lint"]
    assert result.executor == {} and result.changed_paths == [] and result.patch == ""
    assert set(runs(result, "base")) == {"lint", "no-b"} and runs(result, "change") == {}


def test_red_at_base_delivered_with_a_warning_still_fails_a_check_the_change_breaks(tmp_path):
    repo, sha = make_repo(tmp_path, index="# Docs\n\nTODO: write them\n")
    warned = attempt(tmp_path, spec(repo, sha, "write-a", ["lint", "no-b"], on_red_at_base="deliver_with_warning"))
    assert warned.outcome == "succeeded", warned.error
    assert warned.checks_red_at_base == ["lint"] and not runs(warned, "change")["lint"].passed
    broken = attempt(tmp_path, spec(repo, sha, "write-b", ["lint", "no-b"], on_red_at_base="deliver_with_warning"),
                     "ws2")
    assert (broken.outcome, broken.error.code, broken.error.message) == ("failed", "checks_failed",
                                                                         "no-b exited with 1")


def test_base_results_are_cached_per_commit_and_check_set(tmp_path, monkeypatch):
    repo, sha = make_repo(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = attempt(tmp_path, spec(repo, sha, "write-a", ["lint"]))
    second = attempt(tmp_path, spec(repo, sha, "write-a", ["lint"]), "ws2")
    other_set = attempt(tmp_path, spec(repo, sha, "write-a", ["lint", "no-b"]), "ws3")
    assert not runs(first, "base")["lint"].cached and runs(second, "base")["lint"].cached
    assert runs(second, "base")["lint"].duration_seconds == runs(first, "base")["lint"].duration_seconds
    assert not runs(second, "change")["lint"].cached  # the change always runs
    assert not runs(other_set, "base")["lint"].cached  # another check set is another key
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_the_cache_is_bounded_and_written_atomically(tmp_path):
    cache = BaseCache(tmp_path / "cache", limit=3)
    result = CheckResult(name="lint", phase="base", passed=False, exit_code=1, duration_seconds=0.1, output_tail="x")
    for n in range(5):
        cache.put(f"key{n}", [result])
        time.sleep(0.01)  # distinct modification times
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["key2.json", "key3.json", "key4.json"]
    assert cache.get("key4") == [result.model_copy(update={"cached": True})] and cache.get("key0") is None
    (tmp_path / "cache" / "key3.json").write_text("{not json")
    assert cache.get("key3") is None  # a broken entry is a miss, never an error


def test_an_unknown_check_stops_the_attempt(tmp_path):
    repo, sha = make_repo(tmp_path)
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["lint", "nope"]))
    assert (result.outcome, result.error.code) == ("failed", "check_unknown")
    assert "has no check 'nope' (known: flood, hang, hostile, lint, net, no-b, tidy)" in result.error.message


def test_hostile_output_is_redacted_in_the_result(tmp_path):
    repo, sha = make_repo(tmp_path)
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["hostile"], on_red_at_base="deliver_with_warning"))
    tail = runs(result, "change")["hostile"].output_tail
    assert FAKE_TOKEN not in result.model_dump_json() and "token [REDACTED:github_token]" in tail
    assert "<img src=x onerror=alert(1)>" in tail  # kept as text: the PR body renders it inert


def test_the_tail_buffer_keeps_the_end_in_bounded_memory_and_drops_a_cut_line():
    buffer = TailBuffer(limit=64)
    buffer.add(b"secret " + FAKE_TOKEN.encode())  # a line whose start will be cut away
    for n in range(1000):
        buffer.add(b"\n%04d" % n)
    assert buffer.total == 7 + len(FAKE_TOKEN) + 5000 and len(buffer._data) <= 128
    text = buffer.text()
    assert text.endswith("\n0999") and len(text) <= 64 and text[:4].isdigit()
    whole = TailBuffer(limit=64)
    whole.add(f"short {FAKE_TOKEN}\n".encode())
    assert whole.text() == "short [REDACTED:github_token]\n"  # nothing cut: nothing dropped, still redacted


def test_checks_need_the_sandbox_like_recipes(tmp_path, monkeypatch):
    repo, sha = make_repo(tmp_path)
    monkeypatch.setenv("LEVIATHAN_BWRAP", str(tmp_path / "no-bwrap"))
    result = attempt(tmp_path, spec(repo, sha, "write-a", ["lint"]))
    assert result.error.code == "sandbox_unavailable" and "checks run only in the bubblewrap sandbox" in \
        result.error.message


@pytest.mark.parametrize("mode", ["none", "pod"])
def test_without_bwrap_checks_run_in_a_closed_environment(tmp_path, mode):
    """The pod (kubernetes) and the opt-out run checks directly, in their own process group, env closed."""
    repo, sha = make_repo(tmp_path)
    the_spec = spec(repo, sha, "write-a", ["lint"]).model_copy(update={"sandbox": mode})
    result = attempt(tmp_path, the_spec)
    assert result.outcome == "succeeded", result.error
    assert runs(result, "change")["lint"].passed
