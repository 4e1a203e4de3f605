"""The PR body's links come from Airflow's ``[api] base_url``; without one (or a non-http one) there are none."""

from leviathan_lib.orchestrator.tasks import _body_links


def test_links_follow_the_configured_base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    assert _body_links("web", "leviathan__web", "manual__2026-12-06T23:00:00+00:00") == {
        "view_url": "https://airflow.example/leviathan/ui/targets/web",
        "run_url": "https://airflow.example/dags/leviathan__web/runs/manual__2026-12-06T23%3A00%3A00%2B00%3A00"}
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "javascript:alert(1)")
    assert _body_links("web", "leviathan__web", "r") == {}
