"""Deployment invariants every manifest, Helm values file and rendered chart template must keep.

Schemas say whether a manifest is *valid*; these rules say whether it is *Leviathan's*: one namespace,
local images never pulled, worker commands without a shell, no secret values anywhere, worker pods
sandboxed, and the alert rules, their PrometheusRule and their CloudWatch alarms in step
(:mod:`leviathan_lib.deploy.alerts`). They run offline (CI has no cluster), over files and over the
official chart rendered with the project's values. A violation names file, object, rule and detail - never
a matched secret.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.secrets_scan import _PLACEHOLDER, scan_text
from leviathan_lib.deploy import alerts
from leviathan_lib.deploy.yamldocs import load_documents as _load_documents

NAMESPACE = "leviathan"
RELEASE = "airflow"
#: Helm values layered in this order for each environment (k8s/helm/values-<env>.yaml).
VALUES_ENVS = ("kind", "eks")
#: Optional values files layered last (k8s/helm/values-<overlay>.yaml); each is also rendered on every env.
VALUES_OVERLAYS = ("alerts",)
WORKER_IMAGE = "leviathan-worker"
WORKER_LABEL = ("app", "leviathan-worker")
ALLOWLIST = "k8s/secrets-allowlist.yaml"

RULE_NAMESPACE = "namespace"
RULE_PULL_POLICY = "local-image-pull-policy"
RULE_COMMAND = "python-module-command"
RULE_SECRET = "literal-secret"
RULE_WORKER_SECURITY = "worker-security"
RULE_ALERTS = "alerts-in-step"

#: Kinds that live outside any namespace; only the Namespace "leviathan" itself is allowed.
_CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "PersistentVolume", "StorageClass",
    "CustomResourceDefinition", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "IngressClass", "RuntimeClass", "APIService",
}
#: Files that are configuration, not Kubernetes objects (still secret-scanned).
_NOT_OBJECTS = {"Kustomization"}
_SECRET_ENV_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY", "CREDENTIAL")
_TEXT_SUFFIXES = {".yaml", ".yml", ".json"}
#: Helm/Kubernetes camelCase keys holding a secret (``postgresPassword: x``, ``webserverSecretKey: x``),
#: which the word-bounded assignment rule of ``secrets_scan`` cannot see. YAML sources only.
_YAML_SECRET_KEY = re.compile(
    r"^[\s-]*(?!existing)(?P<key>[A-Za-z0-9_]*(?:password|passwd|secret|secretkey|token|apikey|fernetkey|privatekey))"
    r"[\"']?\s*:\s*[\"']?(?P<value>[^\"'\s#{}\[\]]{6,})",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Violation:
    file: str
    obj: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.obj}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class AllowEntry:
    """A reviewed exception to the secret rule: a path glob, one rule name, and why it is harmless."""

    path: str
    rule: str
    reason: str


# --------------------------------------------------------------------------------------------- objects


def _pod_specs(obj: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(pod_spec, pod_labels)`` for a Pod or any workload kind that templates pods."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield spec, (obj.get("metadata") or {}).get("labels") or {}
        return
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template") if isinstance(spec, dict) else None
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        yield template["spec"], (template.get("metadata") or {}).get("labels") or {}


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        found.extend(c for c in pod.get(key) or [] if isinstance(c, dict))
    return found


def _image_repo_tag(image: str) -> tuple[str, str]:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    repo, _, tag = last.partition(":")
    return repo, tag or "latest"


def _is_worker_pod(pod: dict[str, Any], labels: dict[str, Any]) -> bool:
    if labels.get(WORKER_LABEL[0]) == WORKER_LABEL[1]:
        return True
    return any(_image_repo_tag(str(c.get("image", "")))[0] == WORKER_IMAGE for c in _containers(pod))


def _namespace_violations(obj: dict[str, Any], v: _Reporter, *, default_namespace: str | None) -> None:
    kind, meta = obj.get("kind"), obj.get("metadata") or {}
    if kind == "Namespace":
        if meta.get("name") != NAMESPACE:
            v.add(RULE_NAMESPACE, f"namespace {meta.get('name')!r} is not {NAMESPACE!r}")
        return
    if kind in _CLUSTER_SCOPED:
        v.add(RULE_NAMESPACE, f"cluster-scoped {kind} reaches beyond namespace {NAMESPACE!r}")
        return
    namespace = meta.get("namespace", default_namespace)
    if namespace is None:
        v.add(RULE_NAMESPACE, f"no metadata.namespace (must be {NAMESPACE!r}, not the kubectl context's)")
    elif namespace != NAMESPACE:
        v.add(RULE_NAMESPACE, f"metadata.namespace {namespace!r} is not {NAMESPACE!r}")
    for subject in obj.get("subjects") or []:
        if (isinstance(subject, dict) and subject.get("kind") == "ServiceAccount"
                and subject.get("namespace", namespace) != NAMESPACE):
            v.add(RULE_NAMESPACE, f"subject {subject.get('name')!r} is in namespace {subject.get('namespace')!r}")


def _container_violations(pod: dict[str, Any], labels: dict[str, Any], v: _Reporter) -> None:
    worker = _is_worker_pod(pod, labels)
    pod_ctx = pod.get("securityContext") or {}
    if worker and pod.get("automountServiceAccountToken") is not False:
        v.add(RULE_WORKER_SECURITY, "worker pod must set automountServiceAccountToken: false")
    for c in _containers(pod):
        name, image = c.get("name", "?"), str(c.get("image", ""))
        repo, tag = _image_repo_tag(image)
        if tag == "local" and c.get("imagePullPolicy") != "IfNotPresent":
            v.add(RULE_PULL_POLICY, f"container {name!r} image {image!r} has imagePullPolicy "
                                    f"{c.get('imagePullPolicy')!r}; a :local image must use IfNotPresent")
        for env in c.get("env") or []:
            if (isinstance(env, dict) and env.get("value") and "valueFrom" not in env
                    and any(word in str(env.get("name", "")).upper() for word in _SECRET_ENV_WORDS)):
                v.add(RULE_SECRET, f"container {name!r} env {env.get('name')!r} has a literal value; "
                                   "use valueFrom.secretKeyRef")
        if repo == WORKER_IMAGE:
            command = c.get("command")
            if not (isinstance(command, list) and len(command) >= 3 and command[:2] == ["python3", "-m"]):
                v.add(RULE_COMMAND, f"container {name!r} command {command!r} is not "
                                    "['python3', '-m', <module>] (no shell, no image default)")
        if worker:
            _sandbox_violations(name, pod_ctx, c.get("securityContext") or {}, v)


def _sandbox_violations(name: str, pod_ctx: dict[str, Any], ctx: dict[str, Any], v: _Reporter) -> None:
    def effective(key: str) -> Any:
        return ctx.get(key, pod_ctx.get(key))

    if effective("runAsNonRoot") is not True or effective("runAsUser") == 0:
        v.add(RULE_WORKER_SECURITY, f"container {name!r} may run as root (set runAsNonRoot: true, non-zero runAsUser)")
    if ctx.get("readOnlyRootFilesystem") is not True:
        v.add(RULE_WORKER_SECURITY, f"container {name!r} lacks readOnlyRootFilesystem: true")
    if ctx.get("allowPrivilegeEscalation") is not False or ctx.get("privileged") is True:
        v.add(RULE_WORKER_SECURITY, f"container {name!r} lacks allowPrivilegeEscalation: false (or is privileged)")


class _Reporter:
    def __init__(self, source: str, obj: dict[str, Any]):
        meta = obj.get("metadata") or {}
        self.source, self.label = source, f"{obj.get('kind', '?')}/{meta.get('name', '?')}"
        self.found: list[Violation] = []

    def add(self, rule: str, detail: str) -> None:
        self.found.append(Violation(self.source, self.label, rule, detail))


def check_object(obj: dict[str, Any], source: str, *, default_namespace: str | None = None) -> list[Violation]:
    """Violations of one Kubernetes object. ``default_namespace`` is what Helm installs un-namespaced
    rendered objects into; manifest files get none, so they must state their namespace."""
    if not isinstance(obj, dict) or obj.get("kind") in _NOT_OBJECTS or "kind" not in obj:
        return []
    v = _Reporter(source, obj)
    _namespace_violations(obj, v, default_namespace=default_namespace)
    if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
        v.add(RULE_SECRET, "Secret carries data; secrets are created out of band, never from files")
    for pod, labels in _pod_specs(obj):
        _container_violations(pod, labels, v)
    return v.found


# ----------------------------------------------------------------------------------------------- text


def load_allowlist(root: Path) -> list[AllowEntry]:
    path = root / ALLOWLIST
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    entries, problems = [], []
    for i, item in enumerate(data if isinstance(data, list) else [None]):
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str) and item[k] for k in
                                                ("path", "rule", "reason"))):
            problems.append(Problem(ALLOWLIST, f"[{i}]", "expected a mapping with path, rule and reason strings"))
            continue
        entries.append(AllowEntry(item["path"], item["rule"], item["reason"]))
    if problems:
        raise ValidationFailed(problems)
    return entries


def check_text(text: str, source: str, allow: Iterable[AllowEntry] = ()) -> list[Violation]:
    """Secret-scanner findings (rule table in ``secrets_scan``) that no allowlist entry covers."""
    allowed = [a for a in allow if fnmatch.fnmatch(source, a.path)]
    findings = [(f.line, f.rule) for f in scan_text(text)]
    if source.endswith((".yaml", ".yml")):
        for number, line in enumerate(text.splitlines(), start=1):
            match = _YAML_SECRET_KEY.match(line)
            if match and not _PLACEHOLDER.search(match["value"]) and (number, "password_assignment") not in findings:
                findings.append((number, "yaml_secret_key"))
    return [
        Violation(f"{source}:{line}", "-", RULE_SECRET, f"matches secret rule {rule}")
        for line, rule in sorted(findings)
        if not any(a.rule in (rule, "*") for a in allowed)
    ]


# ---------------------------------------------------------------------------------------------- files


def check_file(path: Path, source: str, allow: Iterable[AllowEntry] = ()) -> list[Violation]:
    text = path.read_text(encoding="utf-8")
    found = check_text(text, source, allow)
    if path.suffix in {".yaml", ".yml"}:
        for doc in _load_documents(text, source):
            found.extend(check_object(doc, source))
    return found


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _TEXT_SUFFIXES)


def check_paths(paths: Iterable[Path], root: Path, allow: Iterable[AllowEntry] = ()) -> list[Violation]:
    found: list[Violation] = []
    for base in paths:
        if not base.exists():
            raise ValidationFailed([Problem(str(base), "", "no such file or directory")])
        for file in _files_under(base):
            found.extend(check_file(file, _display(file, root), allow))
    return found


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------- chart


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of layered values files: mappings merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_for(root: Path, env: str, overlays: Iterable[str] = ()) -> dict[str, Any]:
    """values-common.yaml overlaid with values-<env>.yaml (then each values-<overlay>.yaml), as
    ``helm -f common -f env [-f overlay]`` would."""
    merged: dict[str, Any] = {}
    for name in ("values-common.yaml", f"values-{env}.yaml", *(f"values-{o}.yaml" for o in overlays)):
        path = root / "k8s" / "helm" / name
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValidationFailed([Problem(str(path), "", "expected a mapping of Helm values")])
        merged = deep_merge(merged, data)
    return merged


def render_chart(chart_dir: Path, values: dict[str, Any]) -> dict[str, str]:
    """Template path → rendered text, offline through the Helm SDK (``helm template`` equivalent)."""
    try:
        import helm_python as helm
    except ImportError:
        raise ValidationFailed([Problem("helm-python-sdk", "", "not installed: pip install helm-python-sdk==0.2.2 "
                                                               "(or run with --no-chart)")]) from None
    if not (chart_dir / "Chart.yaml").is_file():
        raise ValidationFailed([Problem(str(chart_dir), "", "the official Airflow chart is missing (expected "
                                                            "../shared/specs/airflow-chart/chart; or --chart DIR)")])
    with helm.Chart.load(str(chart_dir)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)


def rendered_objects(rendered: dict[str, str], env: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for template, text in sorted(rendered.items()):
        if template.endswith((".yaml", ".yml")):
            source = f"chart[{env}]:{template}"
            for doc in _load_documents(text, source):
                if isinstance(doc, dict):
                    yield source, doc


def check_chart(chart_dir: Path, root: Path, env: str, allow: Iterable[AllowEntry] = (),
                overlays: tuple[str, ...] = ()) -> list[Violation]:
    found: list[Violation] = []
    rendered = render_chart(chart_dir, values_for(root, env, overlays))
    label = "+".join((env, *overlays))
    for template, text in rendered.items():
        found.extend(check_text(text, f"chart[{label}]:{template}", allow))
    for source, obj in rendered_objects(rendered, label):
        found.extend(check_object(obj, source, default_namespace=NAMESPACE))
    return found


# ----------------------------------------------------------------------------------------- repository


def repository_files(root: Path) -> list[Path]:
    """Files git would commit (tracked or not ignored); tool venvs are never part of the repository."""
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True, text=True, check=False, env={"GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"},
    )
    if result.returncode != 0:
        raise ValidationFailed([Problem(str(root), "", f"not a git checkout: {result.stderr.strip()}")])
    names = [n for n in result.stdout.split("\0") if n and not n.split("/", 1)[0].startswith(".venv")]
    return [root / n for n in sorted(set(names)) if (root / n).is_file()]


def check_repository(root: Path, allow: Iterable[AllowEntry] = ()) -> list[Violation]:
    found: list[Violation] = []
    for path in repository_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        found.extend(check_text(text, path.relative_to(root).as_posix(), allow))
    return found


def check_default(root: Path, chart_dir: Path, *, chart: bool = True, repository: bool = True) -> list[Violation]:
    """The CI check: k8s/ manifests and values, the alerts in step, the chart rendered per environment, the
    repository text."""
    allow = load_allowlist(root)
    found = check_paths([root / "k8s"], root, allow)
    found.extend(Violation(file, obj, RULE_ALERTS, detail) for file, obj, detail in alerts.problems(root))
    if chart:
        for env in VALUES_ENVS:
            found.extend(check_chart(chart_dir, root, env, allow))
            for overlay in VALUES_OVERLAYS:
                found.extend(check_chart(chart_dir, root, env, allow, overlays=(overlay,)))
    if repository:
        seen = {(v.file, v.detail) for v in found}
        found.extend(v for v in check_repository(root, allow) if (v.file, v.detail) not in seen)
    return found
