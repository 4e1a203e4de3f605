"""Leviathan's alerts: promtool checks and unit-tests the rules (k8s/alerts/), and the same alerts stay in
step as a PrometheusRule, as CloudWatch alarms (k8s/aws/leviathan.yaml) and as runbook entries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from leviathan_lib.deploy import alerts, invariants
from tests.k8s_support import CHART, ROOT

ALERTS = ROOT / "k8s" / "alerts"
RULES = ROOT / alerts.RULES
RULE_TESTS = ALERTS / "leviathan-rules.test.yaml"
RUNBOOK = ROOT / alerts.RUNBOOK
#: The duration pattern of the PrometheusRule CRD (prometheus-operator, monitoring.coreos.com_prometheusrules).
CRD_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # the test command installs it: a missing promtool is a broken setup, not a skip
        pytest.fail("promtool not found on PATH: install Debian's `prometheus` package (apt-get install prometheus)")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=ROOT, timeout=120)


def _rules() -> dict:
    return alerts.load_rules(ROOT)


def _alerts() -> list[dict]:
    return alerts.alerting_rules(_rules())


def _seconds(duration: str) -> int:
    return sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


# ------------------------------------------------------------------------------------------- promtool


def test_promtool_checks_the_rules(promtool):
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass(promtool):
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [c for t in cases for c in t["alert_rule_test"]]
    for name in (a["alert"] for a in _alerts()):
        mine = [c for c in checks if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no unit test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no unit test where it stays quiet"


def test_promtool_unit_tests_catch_a_broken_rule(promtool, tmp_path):
    """The unit tests can fail: without the paused/switch-off guard, the 'lagging' target would fire."""
    rules = RULES.read_text()
    guard = "unless on (target_id) (max by (target_id) (leviathan_cycle_expected) == 0)"
    assert guard in rules
    (tmp_path / RULES.name).write_text(rules.replace(guard, ""))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run(promtool, "test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "not stale - a paused target and a switched-off fleet" in result.stdout + result.stderr


@pytest.mark.parametrize("config", ["k8s/alerts/prometheus.yml", "k8s/cloudwatch/prometheus.yaml"])
def test_promtool_checks_the_scrape_configs(promtool, config):
    result = _run(promtool, "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    scrape = yaml.safe_load((ROOT / config).read_text())["scrape_configs"]
    assert [(j["job_name"], j["metrics_path"]) for j in scrape] == [(alerts.JOB, "/leviathan/metrics")]


def test_rule_annotations_name_severity_summary_and_runbook():
    assert alerts._rule_problems(_rules()) == []
    for rule in _alerts():
        if "target_id" in rule["expr"]:
            assert "$labels.target_id" in rule["annotations"]["summary"], rule["alert"]
        assert CRD_DURATION.match(rule.get("for", "0")), rule["alert"]


# ------------------------------------------------------------------------------------ Prometheus Operator


def test_prometheusrule_is_generated_from_the_rules():
    text = (ALERTS / "prometheusrule.yaml").read_text()
    assert text == alerts.render_prometheus_rule(_rules())
    obj = yaml.safe_load(text)
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"]) == (
        "monitoring.coreos.com/v1", "PrometheusRule", invariants.NAMESPACE)
    assert obj["spec"]["groups"] == _rules()["groups"]


def test_prometheusrule_groups_pass_the_same_unit_tests(promtool, tmp_path):
    groups = yaml.safe_load((ALERTS / "prometheusrule.yaml").read_text())["spec"]
    (tmp_path / RULES.name).write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run(promtool, "test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_servicemonitor_scrapes_the_charts_api_server_service_as_the_rules_job():
    monitor = yaml.safe_load((ALERTS / "servicemonitor.yaml").read_text())
    assert (monitor["kind"], monitor["metadata"]["namespace"]) == ("ServiceMonitor", invariants.NAMESPACE)
    rendered = invariants.render_chart(CHART, invariants.values_for(ROOT, "eks", ["alerts"]))
    [service] = [o for _, o in invariants.rendered_objects(rendered, "eks")
                 if o["kind"] == "Service" and o["metadata"]["name"] == "airflow-api-server"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/leviathan/metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": alerts.JOB} in endpoint["relabelings"]
    assert f'up{{job="{alerts.JOB}"}}' in RULES.read_text()


# --------------------------------------------------------------------------------------------- CloudWatch


def test_every_alert_has_a_cloudwatch_alarm_and_every_alarm_an_alert():
    names = [a["alert"] for a in _alerts()]
    alarms = alerts.cfn_alarms(ROOT)
    assert sorted(alarms) == sorted(names)
    assert {p["AlarmName"] for p in alarms.values()} == {alerts.alarm_name(n) for n in names}
    assert alerts.alarm_name("LeviathanSpiderDown") == "leviathan-spider-down"
    assert alerts.problems(ROOT) == []


def test_alarm_windows_match_the_alerts():
    """Period x evaluation periods = the alert's `for` (or its range window when it has none)."""
    alarms = alerts.cfn_alarms(ROOT)
    for rule in _alerts():
        props = alarms[rule["alert"]]
        queries = props.get("Metrics") or [props]
        periods = {q.get("Period") or q.get("MetricStat", {}).get("Period") for q in queries} - {None}
        window = rule.get("for") or re.search(r"\[(\w+)\]", rule["expr"])[1]
        assert {p * props["EvaluationPeriods"] for p in periods} == {_seconds(window)}, rule["alert"]
        assert props.get("DatapointsToAlarm", props["EvaluationPeriods"]) == props["EvaluationPeriods"]


def test_missing_data_is_a_deliberate_choice():
    """Silence from Spider is the Spider-down alarm's breach; the others keep their state meanwhile."""
    treat = {name: p["TreatMissingData"] for name, p in alerts.cfn_alarms(ROOT).items()}
    assert treat.pop("LeviathanSpiderDown") == "breaching"
    assert set(treat.values()) == {"missing"}


def test_alarms_read_only_metrics_the_agent_exports_with_the_dimensions_they_query():
    config = json.loads((ROOT / alerts.AGENT_CONFIG).read_text())
    emf = config["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    assert emf["metric_namespace"] == config["metrics"]["namespace"] == "Leviathan"
    dims = {}
    for declaration in emf["metric_declaration"]:
        assert declaration["label_matcher"].startswith(f"^{alerts.JOB}")
        for selector in declaration["metric_selectors"]:
            dims[re.compile(selector)] = {tuple(sorted(d)) for d in declaration["dimensions"]}
    for name, props in alerts.cfn_alarms(ROOT).items():
        for query in props.get("Metrics") or [props]:
            stat = (query.get("MetricStat") or {}).get("Metric") or query
            if "MetricName" in stat:
                metric, wanted = stat["MetricName"], tuple(sorted(d["Name"] for d in stat["Dimensions"]))
            elif "SCHEMA(" in query.get("Expression", ""):
                found = re.search(r"SELECT \w+\((\w+)\) FROM SCHEMA\(\"\$\{MetricNamespace\}\", ([\w, ]+)\)",
                                  query["Expression"])
                metric, wanted = found[1], tuple(sorted(found[2].replace(" ", "").split(",")))
            else:
                continue
            exported = [d for s, d in dims.items() if s.search(metric)]
            assert exported and wanted in exported[0], (name, metric, wanted)


def test_alerts_drift_is_an_invariant_violation(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "k8s", root / "k8s")
    assert alerts.problems(root) == []
    rules = root / alerts.RULES
    rules.write_text(rules.read_text().replace("alert: LeviathanBreakerOpen", "alert: LeviathanBreakerStuck")
                     .replace("#leviathanbreakeropen", "#leviathanbreakerstuck"))
    agent = root / alerts.AGENT_CONFIG
    agent.write_text(agent.read_text().replace("|sandbox_available)", ")"))
    assert sorted(alerts.problems(root)) == sorted([
        (alerts.PROMETHEUS_RULE, "PrometheusRule/leviathan",
         f"differs from {alerts.RULES}: python -m leviathan_lib.deploy.alerts > {alerts.PROMETHEUS_RULE}"),
        (alerts.CFN_TEMPLATE, "LeviathanBreakerStuck",
         "no AWS::CloudWatch::Alarm named LeviathanBreakerStuck for this alert"),
        (alerts.CFN_TEMPLATE, "LeviathanBreakerOpen", f"alarm without an alert of that name in {alerts.RULES}"),
        (alerts.CFN_TEMPLATE, "LeviathanSandboxUnavailable",
         f"reads leviathan_sandbox_available, which {alerts.AGENT_CONFIG} does not export"),
    ])
    violations = invariants.check_default(root, CHART, chart=False, repository=False)
    assert {v.rule for v in violations} == {invariants.RULE_ALERTS}


# ------------------------------------------------------------------------------------------------ runbook


def _runbook_entries() -> dict[str, str]:
    text = RUNBOOK.read_text()
    parts = re.split(r"^### (\w+)\n", text, flags=re.M)
    return {name: body.split("\n## ")[0] for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_runbook_has_one_entry_per_alert_with_what_confirm_do_silence():
    entries = _runbook_entries()
    names = [a["alert"] for a in _alerts()]
    assert [n for n in entries if n.startswith("Leviathan")] == names
    for name in names:
        assert alerts.runbook_anchor(name) == name.lower()  # the heading's GitHub anchor
        for part in ("**Means**", "**Confirm**", "**Do**", "**Silence**"):
            assert part in entries[name], (name, part)
