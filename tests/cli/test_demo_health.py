"""The demo's health line names every red badge and import error the UI will show (leviathan_lib/demo/health.py)."""

from __future__ import annotations

from leviathan_lib.demo.health import health_report

GREEN = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy"},
         "triggerer": {"status": "healthy"}, "dag_processor": {"status": "healthy"}}


def _api(health: dict, dag_errors: list, plugin_errors: list):
    answers = {"/api/v2/monitor/health": health, "/api/v2/importErrors?limit=100": {"import_errors": dag_errors},
               "/api/v2/plugins/importErrors": {"import_errors": plugin_errors}}
    return lambda method, path: answers[path]


def test_all_green():
    assert health_report(_api(GREEN, [], [])) == [
        "Health: metadatabase, scheduler, triggerer, dag_processor healthy; no DAG or plugin import errors"]


def test_a_triggerer_never_started_and_a_plugin_registered_twice_are_named():
    health = {**GREEN, "triggerer": {"status": None, "latest_triggerer_heartbeat": None}}
    plugin = {"source": "leviathan==0.1.0: EntryPoint(name='leviathan')",
              "error": "Plugin 'leviathan_spider' already registered, skipping"}
    dag = {"filename": "leviathan_targets.py", "stack_trace": "Traceback ...\nValueError: broken\n"}
    assert health_report(_api(health, [dag], [plugin])) == [
        "Health: metadatabase, scheduler, dag_processor healthy; triggerer not running; "
        "1 DAG and 1 plugin import error(s)",
        "  DAG import error in leviathan_targets.py: ValueError: broken",
        "  plugin import error: leviathan==0.1.0: EntryPoint(name='leviathan'): "
        "Plugin 'leviathan_spider' already registered, skipping",
    ]
