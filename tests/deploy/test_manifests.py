"""Worker isolation manifests, CloudWatch agent and CloudFormation: validated offline with real tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.k8s_support import CW_SCHEMA, K8S_VERSION, ROOT, manifest_objects

WORKER = ROOT / "k8s" / "worker"
CLOUDWATCH = ROOT / "k8s" / "cloudwatch"
CFN = ROOT / "k8s" / "aws" / "leviathan.yaml"
KUBECTL = shutil.which("kubectl")
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def _kustomize_resources(directory: Path) -> list[Path]:
    return [directory / r for r in yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]]


def _generator_files(directory: Path) -> set[str]:
    generators = yaml.safe_load((directory / "kustomization.yaml").read_text()).get("configMapGenerator") or []
    return {f.split("=")[-1] for g in generators for f in g.get("files") or []}


def test_kustomizations_list_every_manifest_in_their_directory():
    for directory in (WORKER, CLOUDWATCH):
        listed = {p.name for p in _kustomize_resources(directory)}
        present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"} - _generator_files(directory)
        assert listed == present, directory
    assert _generator_files(CLOUDWATCH) == {"agent-config.json", "prometheus.yaml"}


@pytest.mark.parametrize("directory", [WORKER, CLOUDWATCH], ids=["worker", "cloudwatch"])
def test_manifests_validate_strictly(directory):
    objects = manifest_objects(*_kustomize_resources(directory))
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_rejects_unknown_field():
    sa = manifest_objects(WORKER / "serviceaccount.yaml")[0]
    sa["automountToken"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sa, K8S_VERSION, strict=True)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (Debian: apt-get install kubectl)")
@pytest.mark.parametrize("directory", [WORKER, CLOUDWATCH], ids=["worker", "cloudwatch"])
def test_kubectl_kustomize_builds_offline(directory):
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"], "KUBECONFIG": "/dev/null"})
    objects = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert all(o["metadata"]["namespace"] == "leviathan" for o in objects if o["kind"] != "Namespace")
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    if directory == CLOUDWATCH:
        maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
        config = maps["cloudwatch-agent-config"]["cwagentconfig.json"]
        assert json.loads(config) == json.loads((CLOUDWATCH / "agent-config.json").read_text())
        assert maps["cloudwatch-agent-prometheus"]["prometheus.yaml"] == (CLOUDWATCH / "prometheus.yaml").read_text()
        [agent] = [o for o in objects if o["kind"] == "Deployment"]
        mounts = {m["name"]: m["mountPath"] for m in agent["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        # The agent reads the scrape config where agent-config.json says it is.
        prometheus = json.loads(config)["logs"]["metrics_collected"]["prometheus"]
        assert prometheus["prometheus_config_path"] == f"{mounts['prometheus-config']}/prometheus.yaml"


def test_worker_isolation_semantics():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in manifest_objects(*_kustomize_resources(WORKER))}
    assert objs[("ServiceAccount", "leviathan-worker")]["automountServiceAccountToken"] is False
    role = objs[("Role", "leviathan-pod-launcher")]
    assert not [k for k in objs if k[0].startswith("Cluster")]
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"pods", "pods/log", "pods/exec", "events"}
    binding = objs[("RoleBinding", "leviathan-pod-launcher")]
    assert {s["name"] for s in binding["subjects"]} == {"airflow-scheduler", "airflow-worker", "airflow-triggerer"}
    policy = objs[("NetworkPolicy", "leviathan-worker-egress")]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app": "leviathan-worker"}}
    assert policy["ingress"] == []
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443)}
    quota = objs[("ResourceQuota", "leviathan-workers")]["spec"]
    assert quota["scopes"] == ["Terminating"] and quota["hard"]["pods"] == "2"


def test_cloudwatch_agent_config_validates_against_agent_schema():
    schema = json.loads(CW_SCHEMA.read_text())
    config = json.loads((CLOUDWATCH / "agent-config.json").read_text())
    jsonschema.Draft4Validator(schema).validate(config)
    statsd = config["metrics"]["metrics_collected"]["statsd"]
    assert statsd["service_address"] == ":8125"
    assert config["metrics"]["namespace"] == "Leviathan"
    config["metrics"]["metrics_collected"]["statsd"]["service_adress"] = ":8125"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(config)


def test_cfn_lint_catches_a_broken_template(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(CFN.read_text().replace("Type: AWS::Logs::LogGroup", "Type: AWS::Logs::LogGrup"))
    result = subprocess.run([CFN_LINT, str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "LogGrup" in result.stdout


# cfn-lint and checkov on the real template run through docs/deploy.md (tests/deploy/test_docs_commands.py).


def test_cfn_least_privilege():
    template = yaml.load(CFN.read_text(), Loader=_CfnLoader)
    resources = template["Resources"]
    secrets = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SecretsManager::Secret"]
    assert secrets and all(s["Name"].startswith("leviathan/") for s in secrets)
    assert not [s for s in secrets if "SecretString" in s or "GenerateSecretString" in s]
    worker = resources["WorkerRole"]["Properties"]
    assert "system:serviceaccount:${Namespace}:leviathan-worker" in worker["AssumeRolePolicyDocument"]
    actions = [a for p in worker["Policies"] for s in p["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert actions == ["secretsmanager:GetSecretValue", "kms:Decrypt", "bedrock:InvokeModel"]
    [bedrock] = [s for p in worker["Policies"] for s in p["PolicyDocument"]["Statement"]
                 if s["Action"] == "bedrock:InvokeModel"]  # fmt: skip
    # Only the one model the stack names (and this account's inference profiles for it), never "*".
    assert bedrock["Resource"] and all(r.endswith("${BedrockModelId}") for r in bedrock["Resource"])
    agent = resources["CloudWatchAgentRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert agent["Action"] == "cloudwatch:PutMetricData"
    assert agent["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MetricNamespace"}}
    # The Prometheus scrape arrives as EMF log events: write rights on exactly its log group, nothing else.
    [emf] = resources["CloudWatchAgentRole"]["Properties"]["Policies"][1]["PolicyDocument"]["Statement"]
    assert emf["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    group = resources["PrometheusMetricLogs"]["Properties"]["LogGroupName"]
    config = json.loads((CLOUDWATCH / "agent-config.json").read_text())
    assert config["logs"]["metrics_collected"]["prometheus"]["log_group_name"] == group == "/leviathan/prometheus"
    assert all(group in r for r in emf["Resource"][1:]) and emf["Resource"][0] == "PrometheusMetricLogs.Arn"


class _CfnLoader(yaml.SafeLoader):
    pass


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                 if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node))
