"""Target files edited under a running Airflow (real dag-processor and API server): a typo keeps the target's
DAG, in its error shape, with no import error for the DAG file; a removed target's DAG leaves the DAG list."""

from __future__ import annotations

import subprocess
import sys

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.runner import Api, Stack, _environment, _password, _wait
from tests.e2e.test_scheduler import _free_port

pytestmark = pytest.mark.scheduler


def _dags(api: Api) -> dict[str, list[str]]:
    """The Leviathan DAGs the DAG list shows (Airflow's default: stale DAGs excluded), with their tags."""
    found = api.call("GET", "/api/v2/dags?dag_id_pattern=leviathan__%25&limit=100")["dags"]
    return {d["dag_id"]: sorted(t["name"] for t in d["tags"]) for d in found}


def test_a_typo_keeps_the_dag_and_a_removed_target_leaves_the_list(tmp_path, own_metadata_db):
    port = _free_port()
    demo = tmp_path / "stack"
    demo.mkdir()
    env = {**_environment(demo, port), **own_metadata_db}
    stays = create_demo_target(demo, target_id="stays")
    typo = create_demo_target(demo, target_id="typo_live")
    gone = create_demo_target(demo, target_id="removed")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    stack = Stack(env, demo / "logs")
    try:
        stack.start()
        api = Api(f"http://127.0.0.1:{port}")
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, stack)
        api.login("admin", _wait("the admin password", lambda: _password(demo / "airflow"), 60, stack))
        ids = {names.dag_id(t) for t in ("stays", "typo_live", "removed")}
        _wait("the three DAGs", lambda: ids <= set(_dags(api)), 180, stack)

        typo.write_text(typo.read_text() + "max_prs_per_hr: 5\n")
        gone.unlink()

        def settled():
            dags = _dags(api)
            return dags if ("config-error" in dags.get(names.dag_id("typo_live"), [])
                            and names.dag_id("removed") not in dags) else None

        dags = _wait("the typo's error shape and the removed DAG's exit", settled, 240, stack)
        assert "config-error" not in dags[names.dag_id("stays")]  # the other targets keep their cycle
        assert api.call("GET", "/api/v2/importErrors")["total_entries"] == 0  # the DAG file never fails
        details = api.call("GET", f"/api/v2/dags/{names.dag_id('typo_live')}/details")
        assert "max_prs_per_hr: unknown key; did you mean" in details["doc_md"].replace("\\", "")
        assert details["description"].startswith("INVALID target file typo_live.yaml")
        assert stays.exists()
    finally:
        stack.stop()
