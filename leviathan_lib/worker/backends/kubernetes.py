"""The kubernetes worker backend: the ``KubernetesPodOperator`` that runs one attempt as a pod.

The pod runs the same ``python3 -m leviathan_lib.worker`` as the local backend. The attempt spec comes
in through ``LEVIATHAN_ATTEMPT_SPEC`` (templated from the ``prepare_attempt`` XCom) and the result goes
out through the XCom sidecar (``/airflow/xcom/return.json``), so both backends produce the same document.

Containment is in the pod spec, not in trust: a dedicated ServiceAccount without a token, non-root,
read-only root filesystem (the clone lives in an emptyDir), no capabilities, no privilege escalation,
seccomp ``RuntimeDefault`` (the runtime's filter: keyrings, ptrace, mounts, new user namespaces refused),
a hard ``activeDeadlineSeconds``. The resource limits are the pod's (:func:`container_resources`): CPU and
memory from ``worker_resources``, and ``ephemeral-storage`` covering the two emptyDirs and the logs, so the
kubelet evicts a pod that writes more. Processes are bounded by the kubelet's ``podPidsLimit`` (a node
setting, not a pod field) and open files by the container runtime's ``nofile`` ulimit. The only secret
the pod gets is the model API key, by reference to a
Kubernetes Secret (never a forge token: the orchestrator pushes and opens the PR, not the worker).

Recipe egress (``sandbox_egress``): the worker in the pod runs the same egress proxy as the local backend
(on the pod's 127.0.0.1), so the evidence is the same; but the pod has no network namespace of its own
inside, so the boundary is the NetworkPolicy. :func:`egress_network_policy` renders the additive policy a
target's rules need (``leviathan egress-policy``); it is never applied by Leviathan.

Importing this module imports the cncf provider (~0.6 s): only kubernetes-backend DAGs import it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.pod_manager import EMPTY_XCOM_RESULT
from kubernetes.client import models as k8s

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.egress import is_address
from leviathan_lib.core.names import TASK_PREPARE_ATTEMPT, TASK_RUN_WORKER, XCOM_SPEC, XCOM_TASK_LABEL

WORKER_COMMAND = ["python3", "-m", "leviathan_lib.worker"]
SPEC_ENV = "LEVIATHAN_ATTEMPT_SPEC"
API_KEY_ENV = "LEVIATHAN_LLM_API_KEY"  # leviathan_lib.worker.llm reads it (kept import-light here)
CLONE_TOKEN_ENV = "LEVIATHAN_GIT_READ_TOKEN"  # leviathan_lib.worker.workspace reads it (kept import-light here)
WORKSPACE_MOUNT = "/workspace"
#: The uid/gid of the image's ``leviathan`` user (k8s/worker/Dockerfile).
WORKER_UID = 10001
#: Time Airflow allows on top of the pod deadline for scheduling, image pull and the XCom read.
POD_START_MARGIN = timedelta(minutes=5)
_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """A valid Kubernetes label value (63 characters, alphanumeric at both ends) naming ``text``."""
    value = _LABEL_BAD.sub("-", text)[:63].strip("._-")
    return value or "none"


def egress_network_policy(target: TargetConfig) -> tuple[dict[str, Any] | None, list[str]]:
    """The NetworkPolicy that lets ``target``'s worker pods reach its ``sandbox_egress`` destinations, and
    what it cannot say (None when it would allow nothing).

    Additive to ``k8s/worker/networkpolicy.yaml`` (policies are unions) and selecting only this target's
    pods. A NetworkPolicy matches IP blocks, never names: an IP rule becomes its /32 (/128); a host name
    rule is only reported, for the operator to add its published CIDRs or an FQDN rule of a CNI that
    has one (Cilium ``toFQDNs``); a loopback rule means the pod itself and needs nothing.
    """
    egress: list[dict[str, Any]] = []
    notes: list[str] = []
    for rule in target.sandbox_egress:
        if not is_address(rule.host):
            notes.append(f"{rule.label}: a host name; a NetworkPolicy matches IP blocks only: add its CIDRs "
                         "or use your CNI's FQDN policy")
            continue
        ip = ipaddress.ip_address(rule.host)
        if ip.is_loopback:
            notes.append(f"{rule.label}: the pod's own loopback; nothing to allow")
            continue
        egress.append({"to": [{"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}],
                       "ports": [{"protocol": "TCP", "port": rule.port}]})
    if not egress:
        return None, notes
    selector = {"app": "leviathan-worker", "leviathan/target": label_value(target.target_id)}
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"leviathan-worker-egress-{target.target_id.replace('_', '-')}".rstrip("-"),
            "namespace": target.worker_namespace,
            "labels": dict(selector),
            "annotations": {"leviathan/sandbox-egress": " ".join(r.label for r in target.sandbox_egress)},
        },
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Egress"], "egress": egress},
    }
    return policy, notes


def _xcom(key: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{TASK_PREPARE_ATTEMPT}', key='{key}') }}}}"


def pull_policy(image: str) -> str | None:
    """``IfNotPresent`` for kind-loaded ``:local`` images (they cannot be pulled) and digests; else default."""
    name = image.rsplit("/", 1)[-1]
    if name.endswith(":local") or "@sha256:" in image:
        return "IfNotPresent"
    return None


def container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=WORKER_UID,
        run_as_group=WORKER_UID,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


#: Size limit of the /tmp emptyDir, and room for the container's logs, in the pod's ephemeral-storage limit.
TMP_SIZE_LIMIT = "256Mi"
_LOG_ROOM = "64Mi"


def container_resources(target: TargetConfig) -> k8s.V1ResourceRequirements:
    """Requests and limits of the worker container; ``ephemeral-storage`` bounds the clone, /tmp and logs."""
    from kubernetes.utils.quantity import parse_quantity

    res = target.worker_resources
    storage = sum(parse_quantity(q) for q in (res.workspace_size_limit, TMP_SIZE_LIMIT, _LOG_ROOM))
    return k8s.V1ResourceRequirements(
        requests={"cpu": res.cpu_request, "memory": res.memory_request, "ephemeral-storage": res.workspace_size_limit},
        limits={"cpu": res.cpu_limit, "memory": res.memory_limit, "ephemeral-storage": str(int(storage))},
    )


def worker_env(target: TargetConfig) -> list[k8s.V1EnvVar]:
    """The pod's environment: the spec, scratch locations and (llm only) the key by Secret reference."""
    env = [
        k8s.V1EnvVar(name=SPEC_ENV, value=_xcom(XCOM_SPEC)),
        k8s.V1EnvVar(name="LEVIATHAN_WORKSPACE", value=f"{WORKSPACE_MOUNT}/attempt"),
        k8s.V1EnvVar(name="HOME", value="/tmp"),
        k8s.V1EnvVar(name="TMPDIR", value="/tmp"),
        k8s.V1EnvVar(name="LANG", value="C.UTF-8"),
        k8s.V1EnvVar(name="PYTHONDONTWRITEBYTECODE", value="1"),
    ]
    if target.worker_clone_secret:
        # A read-only clone token for private repositories (optional: public ones clone without it).
        ref = k8s.V1SecretKeySelector(name=target.worker_clone_secret, key=target.worker_clone_secret_key,
                                      optional=True)
        env.append(k8s.V1EnvVar(name=CLONE_TOKEN_ENV, value_from=k8s.V1EnvVarSource(secret_key_ref=ref)))
    if target.executor == "llm":
        # optional: a missing Secret gives a clear llm_no_api_key result instead of a pod stuck in
        # CreateContainerConfigError until its deadline.
        ref = k8s.V1SecretKeySelector(name=target.llm_api_key_secret, key=target.llm_api_key_secret_key, optional=True)
        env.append(k8s.V1EnvVar(name=API_KEY_ENV, value_from=k8s.V1EnvVarSource(secret_key_ref=ref)))
    return env


#: Turns the pod's result document into what may be stored (see ``leviathan_lib.cycle.untrusted``).
ResultFilter = Callable[[Any], dict[str, Any]]


class WorkerPodOperator(KubernetesPodOperator):
    """The worker pod, whose result is filtered the moment it is read from the XCom sidecar.

    The pod's document is as untrusted as a local worker's: it passes ``result_filter`` before Airflow
    pushes it as ``return_value`` (on success and on failure) and is never logged raw. No result file
    stays no result (the cycle tells a timeout from a crash by that); a file that is not JSON is handed
    to the filter as its text, which the filter replaces with a failed result naming why.
    """

    def __init__(self, *, result_filter: ResultFilter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result_filter = result_filter

    def extract_xcom(self, pod: k8s.V1Pod, *, ignore_kill_failure: bool = True) -> dict[str, Any] | None:
        raw = self.pod_manager.extract_xcom(pod, ignore_kill_failure=ignore_kill_failure)
        if isinstance(raw, str) and raw.rstrip() == EMPTY_XCOM_RESULT:
            return None
        try:
            document = json.loads(raw) if isinstance(raw, (str, bytes)) else None
        except ValueError:
            document = raw  # the filter names it (cut short or not JSON) and replaces it
        return self.result_filter(document)


def build_worker_operator(
    target: TargetConfig, *, result_filter: ResultFilter, task_id: str = TASK_RUN_WORKER
) -> KubernetesPodOperator:
    """The ``run_worker`` task of a kubernetes-backend target; pair it with a ``prepare_attempt`` task.

    ``result_filter`` sanitizes the pod's result before it is stored (required: there is no safe default).
    """
    res = target.worker_resources
    timeout = target.attempt_timeout_seconds
    return WorkerPodOperator(
        result_filter=result_filter,
        task_id=task_id,
        name=f"leviathan-worker-{label_value(target.target_id)}"[:50].rstrip("-."),
        namespace=target.worker_namespace,
        image=target.worker_image,
        image_pull_policy=pull_policy(target.worker_image),
        cmds=list(WORKER_COMMAND),
        arguments=[],
        env_vars=worker_env(target),
        labels={
            "app": "leviathan-worker",
            "leviathan/target": label_value(target.target_id),
            "leviathan/task": _xcom(XCOM_TASK_LABEL),
        },
        service_account_name=target.worker_service_account,
        automount_service_account_token=False,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=WORKER_UID, run_as_group=WORKER_UID, fs_group=WORKER_UID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),  # fmt: skip
        container_security_context=container_security_context(),
        xcom_sidecar_container_security_context=container_security_context(),
        container_resources=container_resources(target),
        volumes=[
            k8s.V1Volume(name="workspace", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=res.workspace_size_limit)),
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=TMP_SIZE_LIMIT)),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="workspace", mount_path=WORKSPACE_MOUNT),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
        ],
        active_deadline_seconds=timeout,
        execution_timeout=timedelta(seconds=timeout) + POD_START_MARGIN,
        on_finish_action="delete_pod",
        reattach_on_restart=True,
        do_xcom_push=True,
        get_logs=True,
        retries=0,
        doc_md=f"Runs the worker as a pod in `{target.worker_namespace}` from `{target.worker_image}`; "
        "the result is this task's return_value XCom.",
    )
