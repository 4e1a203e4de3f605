"""The webhook receiver inside a real ``airflow api-server``: signature, replay, size, unknown repository,
missing secret; and coalescing in the metadata DB (control.webhooks). Every payload sent validates
against the shared GitHub description (tests/webhook_payloads.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from leviathan_lib.core import names
from tests.api_server import ApiServer
from tests.webhook_payloads import payload, send, signed

SECRET = "webhook-secret-for-tests"
MAX_BODY = 64 * 1024
HOOKED = "hooked"
REPO = "acme/widgets"


def _secret_env() -> dict[str, str]:
    """The secret as Airflow's environment secrets backend holds a connection (no DB row needed)."""
    return {"AIRFLOW_CONN_LEVIATHAN_WEBHOOK_GITHUB": json.dumps({"conn_type": "generic", "password": SECRET})}


def _write_targets(folder: Path) -> None:
    for item in folder.iterdir():
        item.unlink()
    (folder / f"{HOOKED}.yaml").write_text(
        f"target_id: {HOOKED}\ntarget_repo_url: https://github.com/{REPO}.git\nforge: github\nwebhooks: true\n",
        encoding="utf-8")
    (folder / "polled.yaml").write_text(
        "target_id: polled\ntarget_repo_url: https://github.com/acme/polled.git\nforge: github\n", encoding="utf-8")


def _sync_dags() -> None:
    """Parse the DAG folder into the metadata DB as the DAG processor does (creates the change asset), and
    switch the hooked target on (no scheduler runs here: its runs stay queued)."""
    for command in (["dags", "reserialize"], ["dags", "unpause", names.dag_id(HOOKED)]):
        subprocess.run([sys.executable, "-m", "airflow", *command], check=True, capture_output=True)


def _change_events(target_id: str = HOOKED) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(
            select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == names.change_asset_uri(target_id)).order_by(AssetEvent.id)))


def _clear_triggers(dag: str) -> None:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag))
        session.execute(delete(DagRun).where(DagRun.dag_id == dag))


@pytest.fixture(scope="module")
def hooked(airflow_db):
    import os

    _write_targets(Path(os.environ["LEVIATHAN_TARGETS_DIR"]))
    _sync_dags()
    api = ApiServer(airflow_db, {**_secret_env(), "AIRFLOW__LEVIATHAN__WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY)}).start()
    yield api
    api.stop()


@pytest.fixture
def fresh():
    """No pending trigger or run of the hooked target: the next delivery records an event."""
    _clear_triggers(names.dag_id(HOOKED))


def test_a_signed_delivery_records_one_change_event_and_a_replay_records_nothing(hooked, fresh):
    before = len(_change_events())
    data = payload("push", REPO, branch="main")
    delivery = str(uuid.uuid4())
    first = send(hooked.base, "push", data, SECRET, delivery=delivery)
    assert first.status_code == 202, first.text
    assert first.json() == {"status": "accepted", "targets": [
        {"target_id": HOOKED, "outcome": "recorded", "asset_event_id": first.json()["targets"][0]["asset_event_id"]}]}
    events = _change_events()
    assert len(events) == before + 1
    assert events[-1] == {"kind": "change", "delivery_id": delivery, "event": "push", "repository": REPO}
    again = send(hooked.base, "push", data, SECRET, delivery=delivery)
    assert (again.status_code, again.json()) == (200, {"status": "ignored", "reason": "delivery_already_seen"})
    assert len(_change_events()) == before + 1


def test_forged_truncated_and_missing_signatures_are_refused_and_record_nothing(hooked, fresh):
    from leviathan_lib.control.webhooks import ignored_counts

    before = len(_change_events())
    body, headers = signed("push", payload("push", REPO), SECRET)
    url = f"{hooked.base}/leviathan/webhooks/github"
    for signature in (None, headers["X-Hub-Signature-256"][:-2], "sha256=" + "0" * 64,
                      signed("push", payload("push", REPO), "not-the-secret")[1]["X-Hub-Signature-256"]):
        forged = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
        if signature is not None:
            forged["X-Hub-Signature-256"] = signature
        answer = httpx.post(url, content=body, headers=forged)
        assert answer.status_code == 401, answer.text
        assert "X-Hub-Signature-256" in answer.json()["detail"]
    # A valid signature over another body (a tampered payload) is refused too.
    tampered = body.replace(b"refs/heads/main", b"refs/heads/agent/x/1")
    assert tampered != body
    assert httpx.post(url, content=tampered, headers=headers).status_code == 401
    assert len(_change_events()) == before
    # The forged deliveries' ids were not kept: the real one is still accepted.
    assert "accepted" in httpx.post(url, content=body, headers=headers).text
    assert ignored_counts(datetime(2000, 1, 1, tzinfo=UTC)).get("accepted", 0) >= 1


def test_an_oversized_body_is_refused_before_it_is_read(hooked):
    data = payload("push", REPO, head_commit__message="x" * MAX_BODY)
    answer = send(hooked.base, "push", data, SECRET)
    assert answer.status_code == 413 and "webhook_max_body_bytes" in answer.json()["detail"]


def test_a_repository_no_target_listens_on_is_ignored_and_counted(hooked, fresh):
    from leviathan_lib.control.webhooks import ignored_counts

    since = datetime.now(UTC)
    before = len(_change_events())
    for repo in ("acme/unknown", "acme/polled"):  # polled: a target without webhooks
        answer = send(hooked.base, "push", payload("push", repo), SECRET)
        assert answer.status_code == 202
        assert answer.json() == {"status": "ignored", "reason": "no_target", "repository": repo}
    fork = payload("pull-request-closed", REPO, branch="agent/t/1", head_repo="mallory/widgets")
    answer = send(hooked.base, "pull-request-closed", fork, SECRET)
    assert answer.json()["reason"] == "agent_branch_of_another_repository"
    assert len(_change_events()) == before
    counts = ignored_counts(since)
    assert counts["no_target"] == 2 and counts["agent_branch_of_another_repository"] == 1
    health = httpx.get(f"{hooked.base}/leviathan/health").json()["components"]["webhooks"]
    assert health["status"] == "healthy" and health["targets"] == [HOOKED]
    assert health["deliveries_last_hour"]["no_target"] >= 2


def test_a_ping_names_the_targets_it_would_wake_and_wakes_none(hooked, fresh):
    before = len(_change_events())
    ping = {"zen": "Design for failure.", "hook_id": 1, "repository": payload("push", REPO)["repository"]}
    answer = send(hooked.base, "push", ping, SECRET, event="ping")
    assert (answer.status_code, answer.json()) == (200, {"status": "pong", "repository": REPO, "targets": [HOOKED]})
    assert len(_change_events()) == before


def test_a_burst_is_coalesced_into_one_pending_run_and_never_drops_the_newest_change(hooked, fresh):
    """In the metadata DB directly: the receiver's transaction, without HTTP."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from leviathan_lib.control.webhooks import Delivery, Replay, last_deliveries, receive

    dag = names.dag_id(HOOKED)
    before = len(_change_events())
    outcomes = [receive(Delivery(str(uuid.uuid4()), "127.0.0.1", "push", REPO, targets=(HOOKED,)))[0]
                for _ in range(30)]
    assert [o.outcome for o in outcomes] == ["recorded"] + ["coalesced"] * 29
    assert {o.into for o in outcomes[1:]} == {"asset trigger"}
    assert len(_change_events()) == before + 1
    # A wake-up is not evidence: the event stream does not read it (as an unreadable record or otherwise).
    from leviathan_lib.control.evidence_db import read_events

    assert read_events(target_id=HOOKED, limit=1000) == []
    with create_session() as session:
        assert session.scalar(select(func.count()).select_from(AssetDagRunQueue)
                              .where(AssetDagRunQueue.target_dag_id == dag)) == 1
    # The scheduler turned the trigger into a run that has not started: later changes are coalesced into it.
    _clear_triggers(dag)
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    with create_session() as session:
        session.add(DagRun(dag_id=dag, run_id="asset_triggered__waiting", run_type=DagRunType.ASSET_TRIGGERED,
                           state=DagRunState.QUEUED, run_after=datetime.now(UTC)))
    late = receive(Delivery(str(uuid.uuid4()), "127.0.0.1", "check_run", REPO, targets=(HOOKED,)))
    assert (late[0].outcome, late[0].into) == ("coalesced", "asset_triggered__waiting")
    # Once it runs (it may have read the repository before this change), the next change is recorded.
    with create_session() as session:
        session.execute(DagRun.__table__.update().where(DagRun.dag_id == dag).values(state="running"))
    newest = receive(Delivery(str(uuid.uuid4()), "127.0.0.1", "push", REPO, targets=(HOOKED,)))
    assert newest[0].outcome == "recorded"
    assert last_deliveries({HOOKED})[HOOKED].outcome == "recorded"
    with pytest.raises(Replay):
        receive(Delivery(last_deliveries({HOOKED})[HOOKED].delivery_id, "127.0.0.1", "push", REPO, targets=(HOOKED,)))


def test_a_concurrent_burst_records_one_change_whatever_the_threads_interleave(hooked, fresh):
    """The API server answers deliveries on many threads at once: a target's are serialized, so exactly one
    of a simultaneous burst records a change and every other one is coalesced into it."""
    from concurrent.futures import ThreadPoolExecutor

    from leviathan_lib.control.webhooks import Delivery, receive

    before = len(_change_events())
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: receive(Delivery(str(uuid.uuid4()), "127.0.0.1", "push", REPO,
                                                            targets=(HOOKED,)))[0].outcome, range(24)))
    assert sorted(outcomes) == ["coalesced"] * 23 + ["recorded"]
    assert len(_change_events()) == before + 1


def test_without_a_secret_every_delivery_is_refused_and_health_says_how_to_configure_it(airflow_db, hooked):
    api = ApiServer(airflow_db).start()  # the same targets folder, no AIRFLOW_CONN_ secret
    try:
        answer = send(api.base, "push", payload("push", REPO), SECRET)
        assert answer.status_code == 503
        assert "leviathan_webhook_github" in answer.json()["detail"]
        health = httpx.get(f"{api.base}/leviathan/health").json()
        assert health["components"]["webhooks"]["status"] == "degraded"
        assert "airflow connections add leviathan_webhook_github" in health["components"]["webhooks"]["reason"]
    finally:
        api.stop()


def test_a_delivery_while_the_database_is_down_answers_503_keeps_nothing_and_is_taken_when_redelivered(
        airflow_db, own_metadata_db, tmp_path):
    """PostgreSQL refuses every connection to the API server's metadata database (its sessions ended, new ones
    refused): the delivery is answered 503 and nothing is kept, so GitHub's redelivery of the same id is taken."""
    if not own_metadata_db:
        pytest.skip("PostgreSQL only: the test makes the metadata database refuse connections")
    import os

    import psycopg2

    server, name = own_metadata_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://", 1)[1].rsplit("/", 1)
    targets = tmp_path / "targets"
    targets.mkdir()
    _write_targets(targets)
    env = {**os.environ, **own_metadata_db, "LEVIATHAN_TARGETS_DIR": str(targets)}
    for command in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", names.dag_id(HOOKED)]):
        subprocess.run([sys.executable, "-m", "airflow", *command], check=True, capture_output=True, env=env)
    api = ApiServer(airflow_db, {**own_metadata_db, **_secret_env(), "LEVIATHAN_TARGETS_DIR": str(targets)}).start()
    admin = psycopg2.connect(f"postgresql://{server}/postgres", connect_timeout=5)
    admin.autocommit = True

    def events() -> int:
        with psycopg2.connect(f"postgresql://{server}/{name}", connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = %s",
                        (names.change_asset_uri(HOOKED),))
            return int(cur.fetchone()[0])

    try:
        data, delivery = payload("push", REPO, branch="main"), str(uuid.uuid4())
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            down = send(api.base, "push", data, SECRET, delivery=delivery)
        finally:
            with admin.cursor() as cur:
                cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert down.status_code == 503 and "redeliver it" in down.json()["detail"], down.text
        assert events() == 0
        again = send(api.base, "push", data, SECRET, delivery=delivery)
        assert again.status_code == 202 and again.json()["targets"][0]["outcome"] == "recorded", again.text
        assert events() == 1
    finally:
        admin.close()
        api.stop()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_cli_test_sends_a_signed_ping_through_the_real_receiver(hooked):
    import os

    url = f"{hooked.base}/leviathan/webhooks/github"
    done = _cli("webhooks", "test", "--target", HOOKED, "--url", url, env={**os.environ, **_secret_env()})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"POST {url}: 200 " in done.stdout
    assert (f"ok: a change of https://github.com/{REPO}.git records an event on "
            f"{names.change_asset_uri(HOOKED)}") in done.stdout
    polled = _cli("webhooks", "test", "--target", "polled", "--url", url, env={**os.environ, **_secret_env()})
    assert polled.returncode == 1 and "webhooks: false" in polled.stdout
    assert "would not wake polled" in polled.stdout
    no_secret = _cli("webhooks", "test", "--target", HOOKED, "--url", url, env=dict(os.environ))
    assert no_secret.returncode == 2 and "airflow connections add leviathan_webhook_github" in no_secret.stderr
    wrong = _cli("webhooks", "test", "--target", HOOKED, "--url", url,
                 env={**os.environ, **_secret_env(), "AIRFLOW_CONN_LEVIATHAN_WEBHOOK_GITHUB": json.dumps(
                     {"conn_type": "generic", "password": "another secret"})})
    assert wrong.returncode == 1 and f"POST {url}: 401 " in wrong.stdout


def test_the_rate_limit_is_a_bounded_token_bucket_per_source():
    from leviathan_lib.spider.webhooks import RateLimiter

    limiter = RateLimiter(max_sources=2)
    assert [limiter.allow("a", 3, now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("a", 3, now=20.0)  # one token back after 20 s at 3 a minute
    assert not limiter.allow("a", 3, now=20.0)
    assert limiter.allow("b", 3, now=20.0) and limiter.allow("c", 3, now=20.0)
    assert list(limiter.buckets) == ["b", "c"]  # the least recently seen source is forgotten
