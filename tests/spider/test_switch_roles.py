"""The switch is admin-only in every path: an ``op`` or a ``user`` changing it with Airflow's own REST API
turns nothing on, and each change is found in Airflow's audit log and recorded with who and how."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from tests.airflow_helpers import evidence_record, run_cycle, set_switch
from tests.api_server import ApiServer

VARIABLE = "leviathan_autonomy_enabled"


def _airflow(server: ApiServer, user: str) -> httpx.Client:
    """Airflow's own REST API, as ``user`` (what its UI and scripts call)."""
    return httpx.Client(base_url=f"{server.base}/api/v2", timeout=30,
                        headers={"Authorization": f"Bearer {server.token(user)}"})


def _switch_on() -> tuple[bool, str]:
    from leviathan_lib.control.fleet import global_switch

    return global_switch()


def test_an_op_or_a_user_cannot_turn_autonomy_on_and_is_on_the_record(tmp_path, targets_dir, server):
    from leviathan_lib.control.switch import outside_changes

    target_file = create_demo_target(tmp_path, target_id="roles", targets_dir=targets_dir)
    run_cycle(target_file)  # the DAG and its evidence exist
    dag = names.dag_id("roles")
    with server.client("admin") as spider, _airflow(server, "op") as op, _airflow(server, "user") as user:
        try:
            assert spider.put("/autonomy", json={"enabled": False, "reason": "maintenance"}).status_code == 200
            # An op sets the Variable to true with Airflow's REST API: allowed by Airflow, changes nothing here.
            patched = op.patch(f"/variables/{VARIABLE}", json={"key": VARIABLE, "value": "true"})
            assert patched.status_code == 200, patched.text
            enabled, detail = _switch_on()
            assert not enabled and "changed outside Leviathan" in detail
            assert evidence_record(run_cycle(target_file)[0])["reasons"][0] == "autonomy_disabled"
            # ... nor does a switch-on record forged through the REST API (Airflow stamps `from_rest_api`).
            asset = op.get("/assets", params={"uri_pattern": "leviathan://autonomy/global"}).json()["assets"][0]
            forged = {"kind": "autonomy_changed", "evidence_version": 1, "target_id": None, "enabled": True,
                      "changed_at": datetime.now(UTC).isoformat(), "by": "admin", "reason": "forged"}
            assert op.post("/assets/events", json={"asset_id": asset["id"], "extra": forged}).status_code == 200
            assert not _switch_on()[0]
            # Deleting the Variable switches everything off (fail closed), never on.
            assert op.delete(f"/variables/{VARIABLE}").status_code == 204
            assert _switch_on() == (False, _switch_on()[1]) and "not set" in _switch_on()[1]

            # An admin pauses the target; a plain user unpauses it with Airflow's REST API: it stays off.
            assert spider.put("/autonomy", json={"enabled": True, "reason": "back on"}).status_code == 200
            assert spider.put("/autonomy/roles", json={"enabled": False, "reason": "bad recipe"}).status_code == 200
            assert user.patch(f"/dags/{dag}", json={"is_paused": False}).status_code == 200
            record = evidence_record(run_cycle(target_file)[0])
            assert record["reasons"][0] == "autonomy_disabled"
            assert "paused by admin" in record["checks"][0]["detail"]
            assert "unpaused outside Leviathan" in record["checks"][0]["detail"]

            # Spider finds every change in Airflow's audit log: who, when, how; once each.
            assert spider.get("/health").status_code in (200, 503)
            assert spider.get("/health").status_code in (200, 503)
            seen = [(c.by, c.how, c.target_id, c.enabled) for c in reversed(outside_changes())]
            assert seen[-3:] == [("op", "airflow:patch_variable", None, False),
                                 ("op", "airflow:delete_variable", None, False),
                                 ("user", "airflow:patch_dag", "roles", True)], seen
            page = spider.get("/ui").text
            assert 'id="outside-changes"' in page and "airflow:patch_dag" in page

            # An admin resumes it through Leviathan: it runs again.
            assert spider.put("/autonomy/roles", json={"enabled": True, "reason": "fixed"}).status_code == 200
            assert _switch_on()[0], _switch_on()
            again = evidence_record(run_cycle(target_file)[0])
            assert "autonomy_disabled" not in again["reasons"], again["checks"]  # (PR #1 still holds it)
        finally:
            set_switch(True)
            # Paused again: no later test's scheduler runs it.
            spider.put("/autonomy/roles", json={"enabled": False, "reason": "test done"})
