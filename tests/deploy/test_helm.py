"""Helm values for the official Airflow chart: schema-valid, and the rendered chart is valid Kubernetes."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from leviathan_lib.deploy import invariants
from tests.k8s_support import CHART, K8S_VERSION, ROOT, schema_errors

_LAYERS = [(env, ()) for env in invariants.VALUES_ENVS] + [
    (env, (overlay,)) for env in invariants.VALUES_ENVS for overlay in invariants.VALUES_OVERLAYS]


@pytest.fixture(scope="module", params=_LAYERS, ids=lambda p: "+".join((p[0], *p[1])))
def env_render(request):
    env, overlays = request.param
    values = invariants.values_for(ROOT, env, overlays)
    return env, values, invariants.render_chart(CHART, values)


def test_values_validate_against_chart_schema(env_render):
    env, values, _ = env_render
    assert schema_errors(values) == [], env


def test_helm_sdk_schema_validation_accepts_values(env_render):
    import helm_python as helm

    _, values, _ = env_render
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)


def test_invalid_values_fail_with_schema_path():
    values = invariants.deep_merge(invariants.values_for(ROOT, "kind"),
                                   {"executor": 42, "statsd": {"enabled": "yes"}})
    errors = schema_errors(values)
    assert any(e.startswith("executor:") for e in errors)
    assert any(e.startswith("statsd/enabled:") for e in errors)


def test_rendered_chart_validates_strictly(env_render):
    env, _, rendered = env_render
    objects = list(invariants.rendered_objects(rendered, env))
    assert len(objects) > 15
    failures = []
    for source, obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{source}: {exc}")
    assert failures == []


def _by_kind_name(rendered, env):
    return {(o["kind"], o["metadata"]["name"]): o for _, o in invariants.rendered_objects(rendered, env)}


def _airflow_cfg(rendered, env) -> str:
    return _by_kind_name(rendered, env)[("ConfigMap", "airflow-config")]["data"]["airflow.cfg"]


def test_rendered_chart_is_leviathans_deployment(env_render):
    env, _, rendered = env_render
    objects = _by_kind_name(rendered, env)
    cfg = _airflow_cfg(rendered, env)
    # No chart-made secrets (all named, created out of band), no chart pod-launcher role (k8s/worker/rbac.yaml).
    assert not [k for k in objects if k[0] == "Secret"]
    assert ("Role", "airflow-pod-launcher-role") not in objects
    assert ("Job", "airflow-create-user") not in objects
    assert "plugins_folder = /opt/airflow/plugins" in cfg
    # The target files: ConfigMap leviathan-targets at [leviathan] targets_dir in every pod that parses DAGs.
    assert "targets_dir = /opt/airflow/leviathan/targets" in cfg
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-api-server"):
        [pod] = [o["spec"]["template"]["spec"] for (kind, n), o in objects.items()
                 if n == name and kind in ("Deployment", "StatefulSet")]
        assert {"name": "leviathan-targets", "configMap": {"name": "leviathan-targets"}} in pod["volumes"], name
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert "/opt/airflow/leviathan/targets" in mounts, name
    assert "statsd_on = True" in cfg
    assert "worker_namespace = leviathan" in cfg
    images = {c["image"] for o in objects.values() for pod, _ in invariants._pod_specs(o)
              for c in invariants._containers(pod)}
    assert any(i.startswith("leviathan-airflow:") for i in images)


def test_kind_uses_local_executor_bundled_postgres_and_statsd_exporter():
    values = invariants.values_for(ROOT, "kind")
    rendered = invariants.render_chart(CHART, values)
    cfg = _airflow_cfg(rendered, "kind")
    assert "executor = LocalExecutor" in cfg
    assert "statsd_host = airflow-statsd" in cfg
    assert values["postgresql"] == {"enabled": True, "auth": {"existingSecret": "airflow-postgresql"}}
    objects = _by_kind_name(rendered, "kind")
    assert objects[("Deployment", "airflow-api-server")]["spec"]["template"]["spec"]["containers"][0][
        "imagePullPolicy"] == "IfNotPresent"


def test_eks_uses_kubernetes_executor_secrets_manager_and_cloudwatch_statsd():
    rendered = invariants.render_chart(CHART, invariants.values_for(ROOT, "eks"))
    cfg = _airflow_cfg(rendered, "eks")
    assert "executor = KubernetesExecutor" in cfg
    assert "backend = airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend" in cfg
    assert "statsd_host = cloudwatch-agent.leviathan.svc.cluster.local" in cfg
    objects = _by_kind_name(rendered, "eks")
    assert ("Deployment", "airflow-statsd") not in objects
    pod_template = yaml.safe_load(objects[("ConfigMap", "airflow-config")]["data"]["pod_template_file.yaml"])
    assert pod_template["spec"]["serviceAccountName"] == "airflow-worker"


def _api_server_sources(values: dict) -> list:
    return ((values.get("apiServer") or {}).get("networkPolicy") or {}).get("ingress", {}).get("from") or []


@pytest.mark.parametrize("env", invariants.VALUES_ENVS)
def test_alerts_overlay_opens_metrics_to_the_scrapers_only(env):
    """values-alerts.yaml: metrics without login, API server reachable by the CloudWatch agent and Prometheus."""
    values = invariants.values_for(ROOT, env, ["alerts"])
    rendered = invariants.render_chart(CHART, values)
    assert "metrics_public = True" in _airflow_cfg(rendered, env)
    assert "metrics_public" not in _airflow_cfg(invariants.render_chart(CHART, invariants.values_for(ROOT, env)), env)
    policy = _by_kind_name(rendered, env)[("NetworkPolicy", "airflow-api-server-policy")]["spec"]
    [rule] = policy["ingress"]
    assert {"podSelector": {"matchLabels": {"app": "cloudwatch-agent"}}} in rule["from"]
    assert rule["ports"] == [{"port": 8080}]
    # Helm replaces lists: the overlay must keep every source the other values files admit.
    for name in ("values-common.yaml", f"values-{env}.yaml"):
        layer = yaml.safe_load((ROOT / "k8s" / "helm" / name).read_text())
        assert all(s in _api_server_sources(values) for s in _api_server_sources(layer)), name


def test_the_chart_renders_no_extra_objects():
    """Why the PrometheusRule is a plain manifest: chart 1.19.0 has no extraObjects/extraManifests value."""
    schema = (CHART / "values.schema.json").read_text()
    templates = " ".join(p.read_text() for p in (CHART / "templates").rglob("*") if p.is_file())
    for key in ("extraObjects", "extraManifests"):
        assert key not in schema and key not in templates
