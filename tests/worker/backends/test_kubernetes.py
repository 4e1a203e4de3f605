"""The kubernetes backend rendered offline: a strictly valid, contained pod that runs the same worker.

The pod is built by the operator's own code (``build_pod_request_obj(dry_run=True)``) after rendering
its templates with the XComs ``prepare_attempt`` pushes; no cluster is involved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import ApiClient

from leviathan_lib.contracts.attempt import AttemptSpec, result_from_json
from leviathan_lib.core import names
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.secrets_scan import scan_text
from leviathan_lib.cycle.untrusted import sanitize_result_document
from leviathan_lib.deploy.invariants import check_object
from leviathan_lib.worker.backends.kubernetes import build_worker_operator, label_value, pull_policy
from leviathan_lib.worker.backends.local import run_local_worker
from leviathan_lib.worker.llm_spec import executor_spec
from tests.fake_anthropic import FakeAnthropic, FakeServer, Turn, tool
from tests.worker.test_attempt import BACKLOG, make_spec, make_target_repo

ROOT = Path(__file__).resolve().parents[3]
API_KEY = "sk-ant-kpo000000000000000000000000000000"
#: What the kubelet would resolve ``valueFrom.secretKeyRef`` to: the Secret exists only in the "cluster".
CLUSTER_SECRETS = {("leviathan-llm", "anthropic-api-key"): API_KEY}


def k8s_target(**overrides) -> TargetConfig:
    data = {"target_id": "demo", "target_repo_url": "https://git.example/demo.git", "worker_backend": "kubernetes"}
    return TargetConfig.model_validate({**data, **overrides})


class _TI:
    """The two XComs ``prepare_attempt`` pushes, as the pod's templates pull them."""

    def __init__(self, spec_json: str, task_label: str) -> None:
        self.values = {names.XCOM_SPEC: spec_json, names.XCOM_TASK_LABEL: task_label}

    def xcom_pull(self, task_ids: str, key: str) -> str:
        assert task_ids == names.TASK_PREPARE_ATTEMPT
        return self.values[key]


def render(target: TargetConfig, spec_json: str = "{}", task_id: str = "docs-quickstart"):
    op = build_worker_operator(target, result_filter=sanitize_result_document)
    op.render_template_fields({"ti": _TI(spec_json, label_value(task_id))})
    pod = op.build_pod_request_obj(dry_run=True)
    return op, ApiClient().sanitize_for_serialization(pod)


def volumes_sizes(spec: dict) -> dict[str, str]:
    return {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if v["emptyDir"].get("sizeLimit")}


def base_container(manifest: dict) -> dict:
    [base] = [c for c in manifest["spec"]["containers"] if c["name"] == "base"]
    return base


def test_rendered_pod_validates_strictly(tmp_path):
    for target in (k8s_target(), k8s_target(executor="llm")):
        _, manifest = render(target, json.dumps({"spec_version": 1}))
        path = tmp_path / f"pod-{target.executor}.yaml"
        path.write_text(yaml.safe_dump(manifest))
        proc = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(path)],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "passed for resource pod/leviathan-worker-demo-" in proc.stdout


def test_rendered_pod_keeps_the_invariants():
    op, manifest = render(k8s_target(executor="llm"), json.dumps({"spec_version": 1}))
    assert check_object(manifest, "rendered run_worker pod") == []
    meta, spec, base = manifest["metadata"], manifest["spec"], base_container(manifest)
    assert meta["namespace"] == "leviathan"
    labels = meta["labels"]
    assert (labels["app"], labels["leviathan/target"], labels["leviathan/task"]) == (
        "leviathan-worker", "demo", "docs-quickstart")  # fmt: skip
    assert base["image"] == "leviathan-worker:local" and base["imagePullPolicy"] == "IfNotPresent"
    assert base["command"] == ["python3", "-m", "leviathan_lib.worker"] and not base.get("args")
    assert spec["serviceAccountName"] == "leviathan-worker" and spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] == 900 and spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:  # the XCom sidecar is contained too
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["runAsUser"] == 10001
    # The pod's limits: ephemeral-storage covers the clone's 1Gi emptyDir, /tmp's 256Mi and 64Mi of logs.
    assert base["resources"] == {"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": str(1344 << 20)},
                                 "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"}}
    assert volumes_sizes(spec) == {"workspace": "1Gi", "tmp": "256Mi"}
    mounts = {m["mountPath"]: m["name"] for m in base["volumeMounts"]}
    assert mounts == {"/workspace": "workspace", "/tmp": "tmp", "/airflow/xcom": "xcom"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert all("emptyDir" in volumes[name] for name in ("workspace", "tmp", "xcom"))
    env = {e["name"]: e for e in base["env"]}
    assert env["LEVIATHAN_ATTEMPT_SPEC"]["value"] == '{"spec_version": 1}'
    assert env["LEVIATHAN_LLM_API_KEY"] == {"name": "LEVIATHAN_LLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "leviathan-llm", "key": "anthropic-api-key", "optional": True}}}  # fmt: skip
    assert not any("TOKEN" in name or "GITHUB" in name for name in env)
    assert scan_text(yaml.safe_dump(manifest)) == []
    # What Airflow does around the pod.
    assert op.do_xcom_push is True and op.reattach_on_restart is True and op.on_finish_action.value == "delete_pod"
    assert op.execution_timeout.total_seconds() == 900 + 300 and op.retries == 0


def test_recipe_targets_get_no_model_key_and_settings_follow_the_target():
    target = k8s_target(worker_image="ghcr.io/acme/leviathan-worker:1.2.0", worker_namespace="leviathan",
                        attempt_timeout_seconds=120, worker_service_account="worker-b",
                        worker_resources={"cpu_limit": "2", "memory_limit": "2Gi"})  # fmt: skip
    op, manifest = render(target)
    base = base_container(manifest)
    assert "LEVIATHAN_LLM_API_KEY" not in {e["name"] for e in base["env"]}
    assert base["image"] == "ghcr.io/acme/leviathan-worker:1.2.0" and "imagePullPolicy" not in base
    assert manifest["spec"]["activeDeadlineSeconds"] == 120 and op.execution_timeout.total_seconds() == 420
    assert manifest["spec"]["serviceAccountName"] == "worker-b"
    assert base["resources"]["limits"] == {"cpu": "2", "memory": "2Gi", "ephemeral-storage": str(1344 << 20)}


@pytest.mark.parametrize(
    ("image", "policy"),
    [("leviathan-worker:local", "IfNotPresent"), ("localhost:5000/leviathan-worker:local", "IfNotPresent"),
     ("ghcr.io/a/leviathan-worker@sha256:" + "0" * 64, "IfNotPresent"), ("ghcr.io/a/leviathan-worker:1", None),
     ("leviathan-worker", None)],
)  # fmt: skip
def test_pull_policy(image, policy):
    assert pull_policy(image) == policy


def test_label_values_are_valid():
    assert label_value("docs-quickstart") == "docs-quickstart"
    assert label_value("a" * 100) == "a" * 63
    assert label_value("x.y_" + "-" * 70) == "x.y"
    assert label_value("__") == "none"


def _run_pod_command(manifest: dict, tmp_path: Path) -> dict:
    """Run the pod's container command as a local process with the pod's environment.

    Only what a cluster provides is substituted: the image's PATH (this venv), the mounts (temp dirs),
    Secret references (resolved from CLUSTER_SECRETS) and the sidecar's result file (``--output``).
    """
    base = base_container(manifest)
    env: dict[str, str] = {}
    for item in base["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = CLUSTER_SECRETS[(ref["name"], ref["key"])]
        else:
            env[item["name"]] = item["value"]
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in base["volumeMounts"]}
    for path in mounts.values():
        path.mkdir(parents=True)
    for name, value in list(env.items()):
        for mount, local in mounts.items():
            if value == mount or value.startswith(mount + "/"):
                env[name] = str(local) + value[len(mount):]
    # The image's PATH and package location; added after the mount substitution, which must not touch them
    # (a checkout under /tmp would otherwise be "re-mounted" like the pod's /tmp).
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)})
    output = mounts["/airflow/xcom"] / "return.json"
    proc = subprocess.run([*base["command"], *(base.get("args") or []), "--output", str(output)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(output.read_text())


def _without_timestamps(document: dict) -> str:
    return json.dumps({k: v for k, v in document.items() if k not in ("started_at", "finished_at")}, sort_keys=True)


def test_local_and_kubernetes_backends_produce_identical_results_llm(tmp_path):
    repo, sha = make_target_repo(tmp_path)
    script = [
        Turn([tool("read_file", {"path": "docs/index.md"})]),
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": "# Quickstart\n"})]),
        Turn([tool("finish", {"summary": "Added the quickstart."})]),
    ]
    backlog, _ = parse_backlog(BACKLOG)
    task = backlog.tasks[0].model_copy(update={"recipe": None, "executor": "llm"})
    with FakeServer(FakeAnthropic(list(script))) as url_local, FakeServer(FakeAnthropic(list(script))) as url_pod:
        results = []
        for url, backend in ((url_local, "local"), (url_pod, "kubernetes")):
            target = k8s_target(executor="llm", llm_api_base_url=url, worker_backend=backend)
            spec = AttemptSpec.model_validate({
                "spec_version": 1, "target_id": "demo", "repo_url": str(repo), "commit_sha": sha,
                "task": task.model_dump(mode="json"), "allowed_path_prefixes": target.allowed_path_prefixes,
                "executor": executor_spec(target, task), "attempt": 1, "timeout_seconds": 60,
            })  # fmt: skip
            if backend == "local":
                results.append(run_local_worker(spec, model_api_key=API_KEY).model_dump(mode="json"))
            else:
                _, manifest = render(target, spec.model_dump_json())
                results.append(_run_pod_command(manifest, tmp_path / "pod"))
    local, pod = results
    assert local["outcome"] == "succeeded", local["error"]
    # The base URL differs (two fakes) but is not part of the result; everything else is byte-identical.
    assert _without_timestamps(local) == _without_timestamps(pod)
    assert result_from_json(pod).usage.turns == 3


def test_local_and_kubernetes_backends_agree_recipe(tmp_path):
    repo, sha = make_target_repo(tmp_path)
    spec = make_spec(repo, sha)
    local = run_local_worker(spec).model_dump(mode="json")
    _, manifest = render(k8s_target(), spec.model_dump_json())
    pod = _run_pod_command(manifest, tmp_path / "pod")

    def comparable(document: dict) -> str:
        for step in document["executor"].get("steps", []):
            step.pop("duration_seconds")  # wall-clock, like the timestamps
        return _without_timestamps(document)

    assert local["outcome"] == "succeeded"
    assert comparable(local) == comparable(pod)


def test_dag_runs_the_worker_as_a_pod_on_the_kubernetes_backend(tmp_path):
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    dag = build_target_dag(k8s_target(), tmp_path / "demo.yaml")
    worker, prepare = dag.task_dict[names.TASK_RUN_WORKER], dag.task_dict[names.TASK_PREPARE_ATTEMPT]
    assert isinstance(worker, KubernetesPodOperator)
    assert worker.upstream_task_ids == {names.TASK_PLAN, names.TASK_PREPARE_ATTEMPT}
    plan = dag.task_dict[names.TASK_PLAN]
    assert plan.downstream_task_ids == set(dag.task_dict) - {names.TASK_PLAN}
    assert prepare.upstream_task_ids == {names.TASK_PLAN}
    assert dag.task_dict[names.TASK_OPEN_PULL_REQUEST].upstream_task_ids >= {names.TASK_RUN_WORKER}


def test_local_backend_dags_do_not_import_the_kubernetes_provider(tmp_path):
    code = (
        "import sys\nfrom pathlib import Path\nfrom leviathan_lib.core import names\n"
        "from leviathan_lib.core.config import TargetConfig\n"
        "from leviathan_lib.orchestrator.dag_factory import build_target_dag\n"
        "dag = build_target_dag(TargetConfig(target_id='a', target_repo_url='x'), Path('a.yaml'))\n"
        "assert names.TASK_PREPARE_ATTEMPT not in dag.task_dict\n"
        "print(sorted({'leviathan_lib.worker.backends.kubernetes',\n"
        "              'airflow.providers.cncf.kubernetes.operators.pod'} & set(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # (core Airflow imports only the provider's exceptions)


def test_a_pod_that_left_no_result_past_its_deadline_timed_out():
    from datetime import UTC, datetime, timedelta

    from leviathan_lib.cycle.outcome import missing_result_outcome

    start = datetime(2026, 1, 1, tzinfo=UTC)
    late = missing_result_outcome(start.isoformat(), 900, start + timedelta(seconds=901))
    assert late[:2] == ("timed_out", "timeout")
    assert missing_result_outcome(start.isoformat(), 900, start + timedelta(seconds=30))[:2] == (
        "failed", "worker_crashed")
    assert missing_result_outcome(None, 900, start)[1] == "worker_crashed"  # the local backend always reports


def test_the_pod_is_the_sandbox_no_bwrap_needed_inside(tmp_path):
    """A kubernetes target's spec says ``sandbox: pod``: the worker in the pod never needs bubblewrap."""
    from leviathan_lib.worker.sandbox import mode_label, required_mode

    assert required_mode(k8s_target()) == "pod" and mode_label("pod") == "pod"
    repo, sha = make_target_repo(tmp_path)
    spec = make_spec(repo, sha, sandbox="pod")
    _, manifest = render(k8s_target(), spec.model_dump_json())
    pod = _run_pod_command(manifest, tmp_path / "pod")
    assert pod["outcome"] == "succeeded", pod["error"]
    assert pod["executor"]["sandbox"] == "pod"  # the steps ran in the container, not in a nested bwrap
class _PodManager:
    """Stands in for the provider's pod manager: returns what the XCom sidecar read from the pod."""

    def __init__(self, content: str) -> None:
        self.content = content

    def extract_xcom(self, pod, *, ignore_kill_failure: bool = True) -> str:
        return self.content


LEAK = "ghp_" + "Kp4w" * 9  # a github_token shape, built at run time

LEAK_RECIPE = (
    "  leak:\n    command: [\"python3\", \"-c\", \"import sys; from pathlib import Path; t = 'ghp_' + 'Kp4w' * 9; "
    "print('token', t); Path('docs/quickstart.md').write_bytes(bytes(2) + t.encode())\"]\n"
)


def _repo_with_leaking_recipe(tmp_path: Path) -> tuple[Path, str]:
    bare, _ = make_target_repo(tmp_path)
    work = tmp_path / "edit"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    recipes = work / ".leviathan" / "recipes.yaml"
    recipes.write_text(recipes.read_text() + LEAK_RECIPE)
    for args in (["add", "-A"], ["-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "leak"],
                 ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True)
    return bare, sha.stdout.strip()


def test_the_pods_result_is_as_untrusted_as_a_local_one(tmp_path):
    from leviathan_lib.cycle.untrusted import sanitize_result

    repo, sha = _repo_with_leaking_recipe(tmp_path)
    spec = make_spec(repo, sha, "leak")
    op, manifest = render(k8s_target(), spec.model_dump_json())
    raw = _run_pod_command(manifest, tmp_path / "pod")
    assert raw["outcome"] == "succeeded" and LEAK in json.dumps(raw)  # what the pod really wrote

    op.__dict__["pod_manager"] = _PodManager(json.dumps(raw))
    stored = op.extract_xcom(pod=None)  # what Airflow pushes as run_worker's return_value
    assert LEAK not in json.dumps(stored)
    assert stored["outcome"] == "failed" and stored["error"]["code"] == "secret_detected" and stored["patch"] == ""
    assert "[REDACTED:github_token]" in stored["executor"]["steps"][0]["stdout_tail"]

    local = sanitize_result(run_local_worker(spec)).model_dump(mode="json")
    for document in (local, stored):
        document.pop("finished_at"), document.pop("started_at")
        for step in document["executor"]["steps"]:
            step.pop("duration_seconds")
    assert local == stored  # the same sanitizer on both backends


def test_a_pod_result_file_that_is_not_a_result_is_replaced_and_no_file_stays_no_result():
    op, _ = render(k8s_target())
    op.__dict__["pod_manager"] = _PodManager('{"patch": "' + LEAK + '"')  # not even JSON
    replaced = op.extract_xcom(pod=None)
    assert replaced["error"]["code"] == "result_truncated" and LEAK not in json.dumps(replaced)
    op.__dict__["pod_manager"] = _PodManager("__airflow_xcom_result_empty__")
    assert op.extract_xcom(pod=None) is None  # the cycle then tells a timeout from a crash
