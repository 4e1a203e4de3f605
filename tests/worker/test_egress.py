"""Recipe egress (``sandbox_egress``) through the real bubblewrap sandbox and the real egress proxy.

A package index and a forbidden server, both real HTTP servers on 127.0.0.1, and recipe steps that use
real pip and Python's urllib: the allowed index installs, the forbidden server is refused with the
proxy's answer in the step's output and in the evidence, nothing is reachable without ``sandbox_egress``,
and a step that ignores the proxy variables reaches nothing even when egress is configured.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from leviathan_lib.contracts.attempt import AttemptResult, AttemptSpec, result_from_json
from leviathan_lib.contracts.xcom import AttemptPlan
from leviathan_lib.core.config import TargetConfig, load_target, parse_target
from leviathan_lib.core.egress import MAX_RECORDED, EgressRule
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.cycle.attempt_spec import attempt_spec
from leviathan_lib.cycle.check import check_cycle
from leviathan_lib.cycle.outcome import attempt_evidence
from leviathan_lib.cycle.read import read_with_forge_auth
from leviathan_lib.cycle.untrusted import sanitize_result
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import AttemptEvidence, History, Ledger
from leviathan_lib.worker.backends.local import run_local_worker
from leviathan_lib.worker.egress import EgressLimits, EgressProxy
from leviathan_lib.worker.egress_shim import SANDBOX_PROXY_PORT
from leviathan_lib.worker.sandbox import Sandbox
from tests.worker.test_attempt import ROOT, apply_on_fresh_clone, git, make_spec

PACKAGE, DIST = "leviathan-tinypkg", "leviathan_tinypkg"
VALUE = "installed from the allowed index"
WHEEL = f"{DIST}-1.0-py3-none-any.whl"

NET = """\
import errno, json, os, socket, subprocess, sys, urllib.error, urllib.request
from pathlib import Path

action = sys.argv[1]
if action == "install":
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir",
                           "--no-input", "--retries", "0", "--timeout", "5", "--index-url", os.environ["INDEX_URL"],
                           "--target", "/tmp/site", os.environ["REQUIREMENT"]])
    if proc.returncode:
        sys.exit(proc.returncode)
    sys.path.insert(0, "/tmp/site")
    import leviathan_tinypkg
    Path("docs/installed.txt").write_text(leviathan_tinypkg.VALUE + "\\n")
elif action == "fetch":
    try:
        with urllib.request.urlopen(os.environ["FETCH_URL"], timeout=10) as answer:
            Path("docs/fetched.txt").write_bytes(answer.read())
    except urllib.error.HTTPError as exc:
        sys.exit(f"fetch failed: {exc}: {exc.read().decode()}")
    except OSError as exc:
        sys.exit(f"fetch failed: {exc}")
elif action == "direct":
    # Ignore the proxy variables: straight to the servers' ports, and urllib without a proxy.
    report = {}
    for port in os.environ["PORTS"].split(","):
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=3).close()
            report[port] = "connected"
        except OSError as exc:
            report[port] = errno.errorcode.get(exc.errno, str(exc))
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(os.environ["FETCH_URL"], timeout=3)
        report["urllib"] = "fetched"
    except OSError as exc:
        report["urllib"] = str(getattr(exc, "reason", exc))
    Path("docs/direct.json").write_text(json.dumps(report, sort_keys=True) + "\\n")
"""


def build_wheel(directory: Path) -> Path:
    """A real, minimal pure-Python wheel (PEP 427), written by hand: no build backend, no network."""
    dist_info = f"{DIST}-1.0.dist-info"
    files = {
        f"{DIST}/__init__.py": f"VALUE = {VALUE!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: leviathan-tests\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    wheel = directory / WHEEL
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


class PackageIndex:
    """A PEP 503 "simple" index with one wheel on 127.0.0.1, recording every request it gets."""

    def __init__(self, root: Path) -> None:
        (root / "files").mkdir(parents=True)
        wheel = build_wheel(root / "files")
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        page = root / "simple" / PACKAGE / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text(f'<html><body><a href="/files/{wheel.name}#sha256={sha}">{wheel.name}</a></body></html>\n')
        (root / "big.bin").write_bytes(b"x" * 200_000)
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                requests.append(self.path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/simple") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def index(tmp_path):
    server = PackageIndex(tmp_path / "index")
    yield server
    server.close()


@pytest.fixture
def forbidden(tmp_path):
    server = PackageIndex(tmp_path / "forbidden")  # it would serve the same package, if it were reached
    yield server
    server.close()


def net_repo(tmp_path: Path, index: PackageIndex, forbidden: PackageIndex) -> tuple[Path, str]:
    """A target whose recipes install from / fetch from / connect directly to the two servers."""
    work, bare = tmp_path / "src", tmp_path / "target.git"
    git("-c", "init.defaultBranch=main", "init", "--quiet", str(work))
    recipes = {
        "install": {"INDEX_URL": index.url(), "REQUIREMENT": PACKAGE},
        "install-url": {"INDEX_URL": index.url(), "REQUIREMENT": index.url(f"/files/{WHEEL}")},
        # The allowed index, but the wheel by URL from the forbidden server.
        "install-forbidden": {"INDEX_URL": index.url(), "REQUIREMENT": forbidden.url(f"/files/{WHEEL}")},
        "fetch-forbidden": {"FETCH_URL": forbidden.url("/files/")},
        "direct": {"PORTS": f"{index.port},{forbidden.port}", "FETCH_URL": index.url(f"/simple/{PACKAGE}/")},
    }
    text = "recipes:\n" + "".join(
        f"  {name}:\n    command: [\"python3\", \".leviathan/recipes/net.py\", \"{name.split('-')[0]}\"]\n"
        f"    env: {json.dumps(env)}\n" for name, env in recipes.items())
    files = {".leviathan/recipes.yaml": text, ".leviathan/recipes/net.py": NET, "docs/index.md": "# D\n"}
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "net", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


def spec(repo: Path, sha: str, recipe: str, egress: list[PackageIndex], sandbox: str = "bwrap") -> AttemptSpec:
    rules = [{"host": "127.0.0.1", "port": server.port} for server in egress]
    return make_spec(repo, sha, recipe, task={"allowed_paths": ["docs/"]}, sandbox=sandbox, egress=rules)


def step_output(result: AttemptResult) -> str:
    return "".join(s["stdout_tail"] + s["stderr_tail"] for s in result.executor["steps"])


def evidence(result: AttemptResult, egress: list[EgressRule]) -> AttemptEvidence:
    """The attempt's record as ``record_evidence`` writes it, from the result as ``run_worker`` stores it."""
    target = TargetConfig(target_id="demo", target_repo_url="/x", sandbox_egress=egress)
    plan = AttemptPlan(task_id="docs-quickstart", attempt=1, branch="agent/docs-quickstart/1", task_hash="h",
                       recipe="r")
    stored = sanitize_result(result).model_dump(mode="json")
    record = attempt_evidence(target, plan, result=stored, pr=None, rejection=None, prepared_at=None,
                              now=datetime.now(UTC))
    return AttemptEvidence.model_validate_json(record.model_dump_json())  # as read back from the asset event


@pytest.fixture
def repo(tmp_path, index, forbidden):
    return net_repo(tmp_path, index, forbidden)


def test_a_step_installs_from_the_allowed_index(tmp_path, repo, index, forbidden):
    url, sha = repo
    result = run_local_worker(spec(url, sha, "install", [index]))
    assert result.outcome == "succeeded", (result.error, step_output(result))
    clone = apply_on_fresh_clone(tmp_path, url, sha, result.patch)
    assert (clone / "docs/installed.txt").read_text() == VALUE + "\n"
    report = result.egress
    assert report is not None and report.rules == [f"127.0.0.1:{index.port}"]
    assert report.refused == 0 and report.total == len(report.connections) >= 2
    assert {(c.method, c.host, c.port, c.allowed, c.code, c.address) for c in report.connections} == {
        ("GET", "127.0.0.1", index.port, True, "ok", "127.0.0.1")}
    wheel = next((tmp_path / "index" / "files").glob("*.whl")).stat().st_size
    assert report.bytes_down > wheel and all(c.bytes_up > 0 and c.bytes_down > 0 for c in report.connections)
    assert any(p.startswith("/files/") for p in index.requests) and forbidden.requests == []
    assert evidence(result, [EgressRule(host="127.0.0.1", port=index.port)]).egress == report


@pytest.mark.parametrize(("recipe", "shown"), [
    ("fetch-forbidden", "Forbidden by Leviathan egress: refused GET 127.0.0.1:{port}: not in this target's "
                        "sandbox_egress (allowed: 127.0.0.1:{allowed})"),
    ("install-forbidden", "Forbidden by Leviathan egress: refused GET 127.0.0.1:{port}"),
])
def test_a_step_reaching_the_forbidden_server_fails_with_the_refusal(repo, index, forbidden, recipe, shown):
    url, sha = repo
    result = run_local_worker(spec(url, sha, recipe, [index]))
    assert (result.outcome, result.error.code) == ("failed", "recipe_failed")
    assert shown.format(port=forbidden.port, allowed=index.port) in step_output(result)
    assert forbidden.requests == [] and index.requests == []
    report = result.egress
    assert report.refused == report.total >= 1
    refusal = report.connections[0]
    assert (refusal.method, refusal.host, refusal.port, refusal.allowed, refusal.code, refusal.bytes_up) == (
        "GET", "127.0.0.1", forbidden.port, False, "not_allowlisted", 0)
    assert f"not in this target's sandbox_egress (allowed: 127.0.0.1:{index.port})" in refusal.detail
    recorded = evidence(result, [EgressRule(host="127.0.0.1", port=index.port)])
    assert (recorded.error_code, recorded.egress) == ("recipe_failed", report)


@pytest.mark.parametrize("recipe", ["install", "install-url", "install-forbidden", "fetch-forbidden"])
def test_without_sandbox_egress_nothing_is_reachable(repo, index, forbidden, recipe):
    url, sha = repo
    result = run_local_worker(spec(url, sha, recipe, []))
    assert (result.outcome, result.error.code) == ("failed", "recipe_failed")
    if recipe != "install":  # pip does not say why an index page failed; by URL it does
        assert "Connection refused" in step_output(result)  # the sandbox's own loopback: nothing listens there
    assert "Leviathan egress" not in step_output(result) and result.egress is None
    assert index.requests == [] and forbidden.requests == []


def test_a_direct_connection_that_ignores_the_proxy_fails_even_with_egress(tmp_path, repo, index, forbidden):
    url, sha = repo
    result = run_local_worker(spec(url, sha, "direct", [index, forbidden]))
    assert result.outcome == "succeeded", (result.error, step_output(result))
    report = json.loads((apply_on_fresh_clone(tmp_path, url, sha, result.patch) / "docs/direct.json").read_text())
    assert report == {str(index.port): "ECONNREFUSED", str(forbidden.port): "ECONNREFUSED",
                      "urllib": "[Errno 111] Connection refused"}
    assert result.egress is not None and result.egress.total == 0  # nothing even asked the proxy
    assert index.requests == [] and forbidden.requests == []


def test_unsandboxed_steps_get_the_proxy_on_the_workers_loopback(tmp_path, repo, index, forbidden):
    """The pod's (and the opt-out's) path: same proxy and evidence, but on 127.0.0.1, so not a boundary."""
    url, sha = repo
    result = run_local_worker(spec(url, sha, "install", [index], sandbox="none"))
    assert result.outcome == "succeeded", (result.error, step_output(result))
    assert result.egress.total >= 2 and result.egress.refused == 0
    refused = run_local_worker(spec(url, sha, "fetch-forbidden", [index], sandbox="none"))
    assert refused.egress.connections[0].code == "not_allowlisted" and forbidden.requests == []


def test_the_argv_shares_no_network_and_binds_only_the_proxy_socket(tmp_path):
    socket_path = tmp_path / "egress" / "proxy.sock"
    sandbox = Sandbox(bwrap="/usr/bin/bwrap", checkout=tmp_path / "co", etc_dir=tmp_path / "etc",
                      egress_socket=socket_path)
    argv = sandbox.argv(["/usr/bin/true"], {})
    assert "--unshare-all" in argv and not any(a.startswith("--share") for a in argv)
    binds = [tuple(argv[i + 1:i + 3]) for i, a in enumerate(argv) if a == "--ro-bind"]
    assert (str(socket_path.parent),) * 2 in binds
    command = argv[argv.index("--", argv.index("--remount-ro")) + 1:]
    assert command[4:] == [str(socket_path), str(SANDBOX_PROXY_PORT), "--", "/usr/bin/true"]
    assert command[3].endswith("leviathan_lib/worker/egress_shim.py") and (command[3],) * 2 in binds


# The proxy alone (TCP, as in a pod), for its bounds: raw sockets, real servers, no sandbox.


def _ask(proxy_url: str, request: bytes, timeout: float = 5.0) -> bytes:
    host, port = proxy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(request)
        data, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_the_proxy_cuts_a_connection_at_the_byte_limit(index):
    proxy = EgressProxy([EgressRule(host="127.0.0.1", port=index.port)], limits=EgressLimits(max_bytes=50_000))
    url = proxy.start_tcp()
    answer = _ask(url, f"GET {index.url('/big.bin')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    report = proxy.stop()
    assert len(answer) <= 50_000  # of 200,000: the chunk that would cross the limit is not relayed
    [conn] = report.connections
    assert (conn.allowed, conn.code) == (True, "byte_limit") and conn.bytes_down <= 50_000


def test_the_proxy_refuses_past_the_connection_limit_and_bounds_its_record(index):
    proxy = EgressProxy([EgressRule(host="127.0.0.1", port=index.port)],
                        limits=EgressLimits(max_connections=MAX_RECORDED + 5))
    url = proxy.start_tcp()
    allowed = _ask(url, f"GET {index.url('/simple/')} HTTP/1.1\r\n\r\n".encode())
    for _ in range(MAX_RECORDED + 6):
        last = _ask(url, b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n")
    report = proxy.stop()
    assert allowed.startswith(b"HTTP/1.0 200") and b"connections per attempt" in last
    assert (report.total, report.refused, report.omitted) == (MAX_RECORDED + 7, MAX_RECORDED + 6, 7)
    assert len(report.connections) == MAX_RECORDED and report.connections[-1].code == "not_allowlisted"
    assert report.bytes_down == report.connections[0].bytes_down > 0


def test_a_name_never_reaches_the_loopback_whatever_dns_answers(index):
    """DNS rebinding: an allowed name that resolves to 127.0.0.1 is refused; the server sees nothing."""
    rule = EgressRule(host="packages.example.org", port=index.port)
    proxy = EgressProxy([rule], resolve=lambda host, port: ["127.0.0.1", "::ffff:127.0.0.1"])
    url = proxy.start_tcp()
    answer = _ask(url, f"GET http://packages.example.org:{index.port}/simple/ HTTP/1.1\r\n\r\n".encode())
    [conn] = proxy.stop().connections
    assert answer.startswith(b"HTTP/1.1 403 Forbidden by Leviathan egress") and index.requests == []
    assert (conn.host, conn.code, conn.allowed) == ("packages.example.org", "address_refused", False)


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /simple/ HTTP/1.1\r\n\r\n", b"400", "bad_request"),  # origin form: not a proxy request
    (b"GET https://127.0.0.1:1/ HTTP/1.1\r\n\r\n", b"400", "bad_request"),  # https goes through CONNECT
    (b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", b"403", "bad_request"),  # never a destination
    (b"CONNECT localhost:80 HTTP/1.1\r\n\r\n", b"403", "bad_request"),
    (b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n", b"403", "not_allowlisted"),
])
def test_the_proxy_refuses_what_is_not_an_allowed_destination(request_bytes, status, code):
    proxy = EgressProxy([EgressRule(host="127.0.0.1", port=9)])
    answer = _ask(proxy.start_tcp(), request_bytes)
    [conn] = proxy.stop().connections
    assert answer.split(b" ")[1] == status and b"X-Leviathan-Egress: refused" in answer
    assert (conn.code, conn.allowed) == (code, False)


def test_an_unreachable_allowed_destination_is_recorded_as_allowed_but_failed():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = EgressProxy([EgressRule(host="127.0.0.1", port=port)])
    answer = _ask(proxy.start_tcp(), f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
    [conn] = proxy.stop().connections
    assert answer.startswith(b"HTTP/1.1 502") and (conn.allowed, conn.code) == (True, "connect_failed")


# As a non-root worker: the same sandbox through an unprivileged user namespace (bwrap is not setuid here).

NOBODY = 65534


def _as_nobody(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *argv],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


_RUNS_IN_A_SANDBOX = """
import shutil, subprocess, sys, tempfile
from pathlib import Path
from leviathan_lib.worker.sandbox import Sandbox, base_env
root = Path(tempfile.mkdtemp())
(root / "checkout").mkdir()
sandbox = Sandbox("/usr/bin/bwrap", root / "checkout", root / "etc")
sandbox.write_etc()
ran = subprocess.run(sandbox.argv([sys.executable, "-c", "pass"], base_env()), env={}, capture_output=True)
shutil.rmtree(root)
print(sys.version_info[:2] == VERSION and ran.returncode == 0)
"""


def _nobody_python(home: Path) -> tuple[str, dict[str, str]] | None:
    """An interpreter the unprivileged user can run the worker *and build its sandbox* with, or None.

    The running one first; else the system's ``python3`` of the same version with our site-packages (a
    pyenv under root's 0700 HOME is not visible to that user, so the sandbox could not bind it).
    """
    paths = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    for python in (sys.executable, "/usr/bin/python3"):
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "PYTHONPATH": paths}
        code = _RUNS_IN_A_SANDBOX.replace("VERSION", repr(sys.version_info[:2]))  # our site-packages' Python
        check = _as_nobody([python, "-c", code], env, timeout=60)
        if check.stdout.strip() == "True":
            return python, env
    return None


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_a_non_root_worker_gets_the_same_egress(index, forbidden):
    base = Path(tempfile.mkdtemp(prefix="leviathan-nonroot-"))
    try:
        base.chmod(0o755)
        url, sha = net_repo(base, index, forbidden)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(base)], check=True)
        found = _nobody_python(base)
        if found is None:
            pytest.skip("no interpreter the unprivileged user can build the sandbox with")
        python, env = found
        results = {}
        for recipe, rules in (("install-url", [index]), ("fetch-forbidden", [index]), ("direct", [index])):
            spec_file, output = base / f"{recipe}.json", base / f"{recipe}.out.json"
            spec_file.write_text(spec(url, sha, recipe, rules).model_dump_json())
            os.chown(spec_file, NOBODY, NOBODY)
            _as_nobody([python, "-m", "leviathan_lib.worker", "--spec", str(spec_file), "--output", str(output),
                        "--workspace", str(base / f"ws-{recipe}")], env)
            results[recipe] = result_from_json(output.read_text())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert results["install-url"].outcome == "succeeded", step_output(results["install-url"])
    assert [c.code for c in results["install-url"].egress.connections] == ["ok"]
    refused = results["fetch-forbidden"]
    assert "Forbidden by Leviathan egress: refused GET" in step_output(refused)
    assert refused.egress.connections[0].code == "not_allowlisted"
    assert '"urllib": "[Errno 111] Connection refused"' in results["direct"].patch
    assert results["direct"].egress.total == 0 and forbidden.requests == []


# The key and the contract.


@pytest.mark.parametrize(("rules", "problem"), [
    ("[{host: '*.pypi.org', port: 443}]", "wildcards are not supported"),
    ("[{host: localhost, port: 8000}]", "write 127.0.0.1"),
    ("[{host: 169.254.169.254, port: 80}]", "link-local addresses (cloud metadata services) are never allowed"),
    ("[{host: 0.0.0.0, port: 80}]", "unspecified or multicast"),
    ("[{host: 'pypi.org:443', port: 443}]", "not a host name or IP address"),
    ("[{host: 'https://pypi.org', port: 443}]", "not a host name or IP address"),
    ("[{host: '[::1]', port: 443}]", "without brackets"),
    ("[{host: pypi.org, port: 0}]", "greater than or equal to 1"),
    ("[{host: pypi.org, port: 65536}]", "less than or equal to 65535"),
    ("[{host: pypi.org, port: '443'}]", "valid integer"),
    ("[{host: pypi.org, port: true}]", "valid integer"),
    ("[{host: pypi.org}]", "Field required"),
    ("[{host: pypi.org, port: 443, proto: tcp}]", "unknown key"),
    ("[{host: PyPI.org, port: 443}, {host: pypi.org, port: 443}]", "pypi.org:443 is listed twice"),
    ("pypi.org", "valid list"),
])
def test_sandbox_egress_is_strict(rules, problem):
    with pytest.raises(ValidationFailed, match=re.escape(problem)):
        parse_target(f"target_id: t\ntarget_repo_url: /r.git\nsandbox_egress: {rules}\n", "t.yaml")


def test_sandbox_egress_is_offline_by_default_and_canonical():
    assert TargetConfig(target_id="t", target_repo_url="/r.git").sandbox_egress == []
    target = parse_target("target_id: t\ntarget_repo_url: /r.git\nsandbox_egress:\n"
                          "  - {host: PyPI.org, port: 443}\n  - {host: '::FFFF:a00:1', port: 8080}\n", "t.yaml")
    assert [r.label for r in target.sandbox_egress] == ["pypi.org:443", "[::ffff:a00:1]:8080"]


def test_the_spec_carries_the_targets_rules(tmp_path):
    target_file = create_demo_target(tmp_path, target_id="egr", targets_dir=tmp_path / "targets")
    rules = [EgressRule(host="pypi.org", port=443), EgressRule(host="127.0.0.1", port=8000)]
    target = load_target(target_file).model_copy(update={"sandbox_egress": rules})
    repo_url = target.repo_location(target_file)
    read = read_with_forge_auth(target, repo_url, tmp_path / "cache", as_of=None)
    checked = check_cycle(target, read, history=History(), ledger=Ledger(), run_id="r1", repo_url=repo_url,
                          global_autonomy=True)
    spec = attempt_spec(read, target, checked.attempt, tmp_path / "cache")
    assert spec.egress == rules
    assert AttemptSpec.model_validate_json(spec.model_dump_json()).egress == rules
    with pytest.raises(ValueError, match="listed twice"):
        AttemptSpec.model_validate({**spec.model_dump(), "egress": [rules[0].model_dump()] * 2})


class _HostEcho(SimpleHTTPRequestHandler):
    """Answers 204 and remembers the Host header each request carried."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_plain_http_goes_to_the_allowed_site_whatever_host_the_step_claims():
    """Domain fronting over plain HTTP: the Host header is the checked destination's, not the step's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostEcho)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        port = server.server_address[1]
        proxy = EgressProxy([EgressRule(host="127.0.0.1", port=port)])
        request = f"GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: other-site.example\r\nhost: b\r\n\r\n"
        answer = _ask(proxy.start_tcp(), request.encode())
        proxy.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert answer.startswith(b"HTTP/1.0 204") and _HostEcho.seen == [f"127.0.0.1:{port}"]
