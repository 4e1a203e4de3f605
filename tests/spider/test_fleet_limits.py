"""The fleet limits on the Leviathan view and in the metrics; the admin-only fleet breaker reset, on the record."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from leviathan_lib.demo import create_demo_target
from tests.orchestrator.test_fleet_cycle import _failed_attempts, fleet_resets
from tests.spider.test_view import SAME_ORIGIN, _browser, _csrf, app  # noqa: F401 — the module's app fixture


def _metrics(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_fleet_page_and_metrics_show_the_limits_and_only_an_admin_resets_the_fleet_breaker(
        tmp_path, targets_dir, app):  # noqa: F811 — the fixture imported above
    (targets_dir / "fleet.yaml").write_text("fleet_max_open_prs: 4\nfleet_breaker_min_attempts: 2\n"
                                            "teams:\n  docs: {max_open_prs: 1, llm_daily_usd: 3}\n")
    create_demo_target(tmp_path, target_id="fleetview_a", targets_dir=targets_dir)
    team_file = create_demo_target(tmp_path, target_id="fleetview_b", targets_dir=targets_dir)
    team_file.write_text(team_file.read_text() + "team: docs\n")
    _failed_attempts("fleetview_a", 2)
    admin, viewer = _browser(app, "admin", "admin"), _browser(app, "viewer", "viewer")

    page = viewer.get("/ui").text
    assert 'id="fleet-breaker">OPEN<' in page and "2 of 2 attempt(s) of the fleet failed" in page
    assert "/actions/reset-fleet-breaker" not in page  # a viewer sees it, only an admin gets the form
    assert '<tr data-account="local"><td><code>local</code></td><td>2</td>' in page and "0 / 4" in page
    assert '<tr data-team="docs"><td>docs</td><td>1</td>' in page and "$0.00 / $3.00" in page
    assert "fleet breaker open (see Fleet limits)" in page
    samples = _metrics(viewer)
    assert samples[("leviathan_fleet_breaker_open", ())] == 1
    assert samples[("leviathan_fleet_breaker_failures", ())] == 2
    assert samples[("leviathan_fleet_open_prs", (("account", "local"),))] == 0
    assert samples[("leviathan_fleet_max_open_prs", (("account", "local"),))] == 4
    assert samples[("leviathan_team_budget_exhausted", (("team", "docs"),))] == 0

    token = _csrf(admin.get("/ui").text)
    body = {"reason": "model rolled back", "csrf_token": token}
    assert viewer.post("/ui/actions/reset-fleet-breaker", data=body, headers=SAME_ORIGIN).status_code == 403
    assert admin.post("/ui/actions/reset-fleet-breaker", data={**body, "csrf_token": ""},
                      headers=SAME_ORIGIN).status_code == 403
    assert admin.post("/ui/actions/reset-fleet-breaker", data={**body, "reason": " "},
                      headers=SAME_ORIGIN).status_code == 400
    assert _metrics(viewer)[("leviathan_fleet_breaker_open", ())] == 1  # nothing was reset
    done = admin.post("/ui/actions/reset-fleet-breaker", data=body, headers=SAME_ORIGIN, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/leviathan/ui?done=fleet-breaker-reset"
    page = viewer.get("/ui?done=fleet-breaker-reset").text
    assert "Fleet breaker reset: every target" in page and 'id="fleet-breaker">closed<' in page
    assert "by admin: model rolled back" in page
    assert _metrics(viewer)[("leviathan_fleet_breaker_open", ())] == 0
    assert fleet_resets()[-1] == {"by": "admin", "reason": "model rolled back"}
