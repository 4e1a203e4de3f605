"""Recipe egress on the kubernetes backend, rendered offline: the per-target NetworkPolicy validates strictly
and selects exactly the target's worker pods, and the pod's own command runs the same egress proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from leviathan_lib.cli.main import main
from leviathan_lib.worker.backends.kubernetes import egress_network_policy
from tests.k8s_support import K8S_VERSION, ROOT, manifest_objects
from tests.worker.backends.test_kubernetes import _run_pod_command, k8s_target, render
from tests.worker.test_egress import PackageIndex, net_repo, spec

RULES = [{"host": "pypi.org", "port": 443}, {"host": "203.0.113.7", "port": 8080},
         {"host": "2001:db8::1", "port": 443}, {"host": "127.0.0.1", "port": 3141}]


def test_the_policy_allows_only_the_ip_rules_to_the_targets_own_pods():
    target = k8s_target(target_id="pkg_demo", sandbox_egress=RULES)
    policy, notes = egress_network_policy(target)
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert policy["metadata"]["name"] == "leviathan-worker-egress-pkg-demo"
    allowed = [(rule["to"], rule["ports"]) for rule in policy["spec"]["egress"]]
    assert allowed == [([{"ipBlock": {"cidr": "203.0.113.7/32"}}], [{"protocol": "TCP", "port": 8080}]),
                       ([{"ipBlock": {"cidr": "2001:db8::1/128"}}], [{"protocol": "TCP", "port": 443}])]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert [n.split(":")[0] for n in notes] == ["pypi.org", "127.0.0.1"] and "CIDRs" in notes[0]
    # It selects the pod the operator renders for this target, and no other target's pod.
    _, pod = render(target)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    _, other = render(k8s_target(target_id="other", sandbox_egress=RULES))
    assert not selector.items() <= other["metadata"]["labels"].items()


def test_only_names_or_no_rules_render_no_policy():
    assert egress_network_policy(k8s_target()) == (None, [])
    policy, notes = egress_network_policy(k8s_target(sandbox_egress=RULES[:1]))
    assert policy is None and len(notes) == 1


def test_the_base_worker_policy_still_allows_no_registry():
    [base] = manifest_objects(ROOT / "k8s" / "worker" / "networkpolicy.yaml")
    ports = {(p["protocol"], p["port"]) for rule in base["spec"]["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443)}
    cidrs = {b["ipBlock"]["cidr"] for rule in base["spec"]["egress"] for b in rule["to"] if "ipBlock" in b}
    assert "203.0.113.7/32" not in cidrs


def test_the_cli_prints_valid_yaml_and_says_what_it_cannot_render(tmp_path, capsys):
    target_file = tmp_path / "pkg.yaml"
    target_file.write_text(yaml.safe_dump({"target_id": "pkg", "target_repo_url": "https://git.example/p.git",
                                           "worker_backend": "kubernetes", "sandbox_egress": RULES}))
    local_file = tmp_path / "local.yaml"
    local_file.write_text("target_id: loc\ntarget_repo_url: /r.git\nsandbox_egress: [{host: pypi.org, port: 443}]\n")
    assert main(["egress-policy", str(target_file), str(local_file)]) == 0
    out, err = capsys.readouterr()
    [policy] = [d for d in yaml.safe_load_all(out) if d]
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert "# pkg: pypi.org:443: a host name" in out and "worker_backend is local" in out
    assert f"{target_file}: pypi.org:443" in err
    path = tmp_path / "policy.yaml"
    path.write_text(out)
    proc = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_pod_runs_the_same_proxy_and_records_the_same_evidence(tmp_path):
    index, forbidden = PackageIndex(tmp_path / "index"), PackageIndex(tmp_path / "forbidden")
    try:
        url, sha = net_repo(tmp_path, index, forbidden)
        results = {}
        for recipe in ("install", "fetch-forbidden"):
            attempt = spec(url, sha, recipe, [index], sandbox="pod")
            _, manifest = render(k8s_target(), attempt.model_dump_json())
            results[recipe] = _run_pod_command(manifest, tmp_path / f"pod-{recipe}")
    finally:
        index.close()
        forbidden.close()
    installed, refused = results["install"], results["fetch-forbidden"]
    assert installed["outcome"] == "succeeded", json.dumps(installed["executor"])[-2000:]
    assert {c["code"] for c in installed["egress"]["connections"]} == {"ok"}
    assert refused["egress"]["connections"][0]["code"] == "not_allowlisted" and forbidden.requests == []
    assert "Forbidden by Leviathan egress" in refused["executor"]["steps"][0]["stderr_tail"]
