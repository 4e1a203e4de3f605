"""Leviathan's alerts in their three forms, kept in step.

``k8s/alerts/leviathan-rules.yaml`` (Prometheus rules, unit-tested with promtool) is the one source.
``k8s/alerts/prometheusrule.yaml`` is generated from it for the Prometheus Operator
(``python -m leviathan_lib.deploy.alerts > k8s/alerts/prometheusrule.yaml``), and ``k8s/aws/leviathan.yaml``
holds one CloudWatch alarm per alert: logical ID = the alert name, ``AlarmName`` = the name in kebab case,
the description links the alert's runbook anchor, and every metric it reads is one the CloudWatch agent
exports (``k8s/cloudwatch/agent-config.json``). :func:`problems` reports every way they drifted apart.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.yamlsrc import load_yaml
from leviathan_lib.deploy.yamldocs import load_documents

RULES = "k8s/alerts/leviathan-rules.yaml"
PROMETHEUS_RULE = "k8s/alerts/prometheusrule.yaml"
CFN_TEMPLATE = "k8s/aws/leviathan.yaml"
AGENT_CONFIG = "k8s/cloudwatch/agent-config.json"
RUNBOOK = "docs/runbook.md"
#: The scrape job the rules, the ServiceMonitor, the example Prometheus config and the agent all name.
JOB = "leviathan-spider"
SEVERITIES = ("critical", "warning")
ALARM_TYPE = "AWS::CloudWatch::Alarm"

_HEADER = (
    f"# GENERATED from {RULES} by `python -m leviathan_lib.deploy.alerts > {PROMETHEUS_RULE}`:\n"
    "# edit the rules file, then regenerate (`leviathan invariants` fails while the two differ).\n"
    "# Prometheus Operator: kubectl apply -f k8s/alerts/prometheusrule.yaml (docs/operations.md#alerts).\n"
)
#: Metric names an alarm reads: a MetricStat/MetricName, or the FUNC(name) of a Metrics Insights query.
_INSIGHTS_METRIC = re.compile(r"\bSELECT\s+[A-Z_]+\((\w+)\)", re.IGNORECASE)


def runbook_anchor(alert: str) -> str:
    """The anchor of the ``### <alert>`` heading in docs/runbook.md (GitHub lower-cases it)."""
    return alert.lower()


def runbook_url(alert: str) -> str:
    return f"{RUNBOOK}#{runbook_anchor(alert)}"


def alarm_name(alert: str) -> str:
    """``LeviathanBreakerOpen`` -> ``leviathan-breaker-open``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", alert).lower()


def load_rules(root: Path) -> dict[str, Any]:
    path = root / RULES
    data = load_yaml(path.read_text(encoding="utf-8"), RULES)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise ValidationFailed([Problem(RULES, "groups", "expected a Prometheus rule file (a mapping with groups)")])
    return data


def alerting_rules(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rules["groups"] for r in g.get("rules") or [] if isinstance(r, dict) and "alert" in r]


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule (monitoring.coreos.com/v1) carrying exactly the rule file's groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "leviathan", "namespace": "leviathan",
                     "labels": {"app.kubernetes.io/name": "leviathan", "app.kubernetes.io/component": "alerts"}},
        "spec": {"groups": rules["groups"]},
    }


def render_prometheus_rule(rules: dict[str, Any]) -> str:
    return _HEADER + yaml.safe_dump(prometheus_rule(rules), sort_keys=False, width=120, allow_unicode=True)


def cfn_alarms(root: Path) -> dict[str, dict[str, Any]]:
    """Logical ID -> Properties of every CloudWatch alarm in the stack."""
    [template] = load_documents((root / CFN_TEMPLATE).read_text(encoding="utf-8"), CFN_TEMPLATE)
    resources = template.get("Resources") or {}
    return {name: r.get("Properties") or {} for name, r in resources.items()
            if isinstance(r, dict) and r.get("Type") == ALARM_TYPE}


def alarm_metrics(props: dict[str, Any]) -> set[str]:
    names = {props["MetricName"]} if "MetricName" in props else set()
    for query in props.get("Metrics") or []:
        stat = ((query.get("MetricStat") or {}).get("Metric") or {}).get("MetricName")
        if stat:
            names.add(stat)
        names.update(_INSIGHTS_METRIC.findall(str(query.get("Expression") or "")))
    return names


def exported_metric_selectors(root: Path) -> list[str]:
    """The agent's EMF metric selectors for the scrape job: what reaches CloudWatch as metrics."""
    config = json.loads((root / AGENT_CONFIG).read_text(encoding="utf-8"))
    emf = config["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    return [s for d in emf["metric_declaration"] for s in d.get("metric_selectors") or []]


def _rule_problems(rules: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for rule in alerting_rules(rules):
        alert, labels, notes = rule["alert"], rule.get("labels") or {}, rule.get("annotations") or {}
        if labels.get("severity") not in SEVERITIES:
            found.append((RULES, alert, f"severity label {labels.get('severity')!r} is not one of {SEVERITIES}"))
        for key in ("summary", "description"):
            if not str(notes.get(key) or "").strip():
                found.append((RULES, alert, f"no {key} annotation"))
        if notes.get("runbook_url") != runbook_url(alert):
            found.append((RULES, alert, f"runbook_url {notes.get('runbook_url')!r} is not {runbook_url(alert)!r}"))
    return found


def _alarm_problems(root: Path, alerts: list[str]) -> list[tuple[str, str, str]]:
    alarms = cfn_alarms(root)
    found = [(CFN_TEMPLATE, alert, f"no {ALARM_TYPE} named {alert} for this alert") for alert in alerts
             if alert not in alarms]
    found += [(CFN_TEMPLATE, name, f"alarm without an alert of that name in {RULES}") for name in alarms
              if name not in alerts]
    selectors = [re.compile(s) for s in exported_metric_selectors(root)]
    for name, props in alarms.items():
        if props.get("AlarmName") != alarm_name(name):
            found.append((CFN_TEMPLATE, name, f"AlarmName {props.get('AlarmName')!r} is not {alarm_name(name)!r}"))
        if f"#{runbook_anchor(name)}" not in str(props.get("AlarmDescription") or ""):
            found.append((CFN_TEMPLATE, name, f"AlarmDescription does not link #{runbook_anchor(name)}"))
        metrics = alarm_metrics(props)
        if not metrics:
            found.append((CFN_TEMPLATE, name, "reads no metric"))
        for metric in sorted(m for m in metrics if not any(s.search(m) for s in selectors)):
            found.append((CFN_TEMPLATE, name, f"reads {metric}, which {AGENT_CONFIG} does not export"))
    return found


def problems(root: Path) -> list[tuple[str, str, str]]:
    """``(file, object, detail)`` for every way the rules, the PrometheusRule and the alarms disagree."""
    try:
        rules = load_rules(root)
    except (OSError, ValidationFailed) as exc:
        return [(RULES, "-", f"cannot read the rules: {exc}")]
    found = _rule_problems(rules)
    path = root / PROMETHEUS_RULE
    if not path.is_file() or path.read_text(encoding="utf-8") != render_prometheus_rule(rules):
        found.append((PROMETHEUS_RULE, "PrometheusRule/leviathan",
                      f"differs from {RULES}: python -m leviathan_lib.deploy.alerts > {PROMETHEUS_RULE}"))
    names = [r["alert"] for r in alerting_rules(rules)]
    try:
        found += _alarm_problems(root, names)
    except (OSError, KeyError, TypeError, ValueError, ValidationFailed) as exc:
        found.append((CFN_TEMPLATE, "-", f"cannot read the alarms or the agent's exports: {exc!r}"))
    return found


def main() -> int:
    """Print the PrometheusRule generated from the rules file of the current folder's repository."""
    sys.stdout.write(render_prometheus_rule(load_rules(Path.cwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
