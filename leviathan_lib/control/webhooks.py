"""Webhook deliveries in the metadata DB: replay refusal, the change asset event, coalescing, the last per target.

Each accepted delivery is one transaction: its id is inserted into ``leviathan_webhook_delivery`` (the
primary key refuses a replay atomically, across API-server replicas) and, for each target it concerns,
either one asset event is recorded on the target's change asset or the delivery is coalesced into a
run that will read the repository later anyway. A failure anywhere rolls all of it back, so the forge's
redelivery finds nothing half-written. Seen ids are kept :data:`RETENTION` and at most :data:`MAX_SEEN`.

Coalescing never loses the newest change, whatever the deliveries' order or clocks: a delivery is only
ever skipped when the target's DAG has a run that has not started yet (``queued``) or a queued asset
trigger (a run the scheduler has still to create). Either reads the forge and the repository after
this delivery arrived, so it sees this change and every earlier one. Payload timestamps are never used.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from leviathan_lib.core.names import change_asset_uri, dag_id

RETENTION = timedelta(days=3)
MAX_SEEN = 100_000
#: Inserts between two prunes of old delivery ids (per process).
PRUNE_EVERY = 500

_metadata = MetaData()
#: Every delivery id seen (replay refusal), with what it was and what it did.
DELIVERIES = Table(
    "leviathan_webhook_delivery", _metadata,
    Column("delivery_id", String(100), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("source", String(100), nullable=False),
    Column("event", String(50), nullable=False),
    Column("repository", String(300), nullable=False),
    Column("outcome", String(60), nullable=False),
)
#: Per target, the newest delivery that concerned it and what it triggered (the Leviathan view).
TARGET_STATE = Table(
    "leviathan_webhook_target", _metadata,
    Column("target_id", String(100), primary_key=True),
    Column("delivery_id", String(100), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("event", String(50), nullable=False),
    Column("outcome", String(60), nullable=False),
    Column("asset_event_id", Integer, nullable=True),
    Column("coalesced_into", String(250), nullable=True),
)


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    source: str
    event: str
    repository: str
    #: Targets the delivery concerns; woken only when it is not ``ignored`` (a ping names them, wakes none).
    targets: tuple[str, ...] = ()
    #: Why the delivery wakes nothing (recorded as seen, with this as its outcome).
    ignored: str | None = None


@dataclass(frozen=True)
class TargetOutcome:
    target_id: str
    #: ``recorded``: an asset event (``asset_event_id``); ``coalesced``: a run not yet started will see it
    #: (``into``: that run's id, or ``asset trigger`` when the scheduler has still to create it);
    #: ``dag_not_parsed``: the target's DAG (and so its change asset) does not exist yet; ``dag_paused``: the
    #: target is switched off (its safety-net cron catches up once it is unpaused).
    outcome: str
    asset_event_id: int | None = None
    into: str | None = None


class Replay(Exception):
    """The delivery id was seen before: nothing is recorded again."""


class _Schema:
    """Creates the two tables once per process (``checkfirst``: replicas and restarts race harmlessly)."""

    def __init__(self) -> None:
        self.ready = False
        self.lock = threading.Lock()
        self.inserts = itertools.count(1)

    def ensure(self, session: Any) -> None:
        if self.ready:
            return
        with self.lock:
            if not self.ready:
                _metadata.create_all(bind=session.get_bind(), checkfirst=True)
                self.ready = True


_schema = _Schema()


class _TargetLocks:
    """One delivery per target at a time in this process, deliveries for different targets side by side.

    The DAG's row lock (``FOR UPDATE``) already serializes a target's deliveries across API-server replicas;
    this lock spares the process's threads from queueing on it. Locks are taken in sorted order (a delivery
    may concern several targets), and there is one per configured target at most. SQLite has one writer at a
    time and no row locks, so there every delivery takes one process-wide lock, as one writer.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._everything = threading.Lock()

    @contextmanager
    def hold(self, targets: tuple[str, ...]) -> Iterator[None]:
        """Held until the delivery's transaction has committed (the next one must see what it wrote)."""
        from airflow.settings import get_engine

        if get_engine().dialect.name == "sqlite":
            with self._everything:
                yield
            return
        with self._guard:
            locks = [self._locks.setdefault(target, threading.Lock()) for target in sorted(set(targets))]
        with ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            yield


_target_locks = _TargetLocks()


def _pending(session: Any, dag: str) -> str | None:
    """What will read the repository later anyway: a run not yet started (its id), else a queued asset trigger
    (one round trip: a flood asks this once per delivery)."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dagrun import DagRun

    queued = select(DagRun.run_id).where(DagRun.dag_id == dag, DagRun.state == "queued").limit(1)
    trigger = select(literal("asset trigger")).where(AssetDagRunQueue.target_dag_id == dag).limit(1)
    found = session.scalar(select(func.coalesce(queued.scalar_subquery(), trigger.scalar_subquery())))
    return str(found) if found is not None else None


def _wake(session: Any, target_id: str, delivery: Delivery) -> TargetOutcome:
    """Lock the target's DAG row first (it serializes the target's deliveries), then coalesce or record; the
    change asset is looked up only to record, so a coalesced delivery costs the lock and one query."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.models.dag import DagModel

    dag = dag_id(target_id)
    paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag).with_for_update())
    if paused is None:
        return TargetOutcome(target_id, "dag_not_parsed")
    if paused:  # Airflow queues no run for a paused DAG: an event would only pile up
        return TargetOutcome(target_id, "dag_paused")
    pending = _pending(session, dag)
    if pending is not None:
        return TargetOutcome(target_id, "coalesced", into=pending)
    asset = session.scalar(select(AssetModel).where(AssetModel.uri == change_asset_uri(target_id)))
    if asset is None:  # the DAG was parsed before the target took webhooks
        return TargetOutcome(target_id, "dag_not_parsed")
    extra = {"kind": "change", "delivery_id": delivery.delivery_id, "event": delivery.event,
             "repository": delivery.repository}
    event = asset_manager.register_asset_change(asset=asset, extra=extra, session=session, source_is_api=True)
    if event is None:
        raise RuntimeError(f"Airflow did not record the change event on {asset.uri}")
    return TargetOutcome(target_id, "recorded", asset_event_id=event.id)


def _remember(session: Any, delivery: Delivery, outcome: TargetOutcome, now: datetime) -> None:
    values = {"delivery_id": delivery.delivery_id, "received_at": now, "event": delivery.event,
              "outcome": outcome.outcome, "asset_event_id": outcome.asset_event_id, "coalesced_into": outcome.into}
    done = session.execute(update(TARGET_STATE).where(TARGET_STATE.c.target_id == outcome.target_id)
                           .values(**values))
    if done.rowcount == 0:
        session.execute(insert(TARGET_STATE).values(target_id=outcome.target_id, **values))


def _prune(session: Any, now: datetime) -> None:
    session.execute(delete(DELIVERIES).where(DELIVERIES.c.received_at < now - RETENTION))
    cutoff = session.scalar(select(DELIVERIES.c.received_at).order_by(DELIVERIES.c.received_at.desc())
                            .offset(MAX_SEEN).limit(1))
    if cutoff is not None:
        session.execute(delete(DELIVERIES).where(DELIVERIES.c.received_at <= cutoff))


def _first_sight(session: Any, values: dict[str, Any]) -> bool:
    """Insert the delivery's id; False when it was seen before. One statement where the database can skip a
    conflict (PostgreSQL, SQLite), else a savepoint around the insert."""
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        done = session.execute(dialect_insert(DELIVERIES).values(**values)
                               .on_conflict_do_nothing(index_elements=[DELIVERIES.c.delivery_id]))
        return bool(done.rowcount == 1)
    try:
        with session.begin_nested():
            session.execute(insert(DELIVERIES).values(**values))
    except IntegrityError:
        return False
    return True


def receive(delivery: Delivery, now: datetime | None = None) -> list[TargetOutcome]:
    """Record ``delivery`` as seen and wake each target it concerns, in one transaction.

    Raises :class:`Replay` for an id seen before, and any database error as it is (nothing is kept then).
    """
    from airflow.utils.session import create_session

    now = now or datetime.now(UTC)
    outcome = delivery.ignored or "accepted"
    with _target_locks.hold(() if delivery.ignored else delivery.targets), create_session() as session:
        _schema.ensure(session)
        if not _first_sight(session, {"delivery_id": delivery.delivery_id, "received_at": now,
                                      "source": delivery.source[:100], "event": delivery.event[:50],
                                      "repository": delivery.repository[:300], "outcome": outcome}):
            raise Replay(delivery.delivery_id)
        outcomes = [] if delivery.ignored else [_wake(session, target_id, delivery)
                                                 for target_id in sorted(set(delivery.targets))]
        for result in outcomes:
            _remember(session, delivery, result, now)
        if next(_schema.inserts) % PRUNE_EVERY == 0:
            _prune(session, now)
    return outcomes


def ignored_counts(since: datetime) -> dict[str, int]:
    """Deliveries since ``since`` by outcome (``accepted``, ``no_target``, an ignore reason)."""
    from airflow.utils.session import create_session
    from sqlalchemy import func

    with create_session() as session:
        _schema.ensure(session)
        rows = session.execute(select(DELIVERIES.c.outcome, func.count()).where(DELIVERIES.c.received_at >= since)
                               .group_by(DELIVERIES.c.outcome)).all()
    return {str(outcome): int(count) for outcome, count in rows}


@dataclass(frozen=True)
class LastDelivery:
    """The newest delivery that concerned a target, what it did, and the cycle it started (if one has)."""

    target_id: str
    delivery_id: str
    received_at: datetime
    event: str
    outcome: str
    asset_event_id: int | None
    coalesced_into: str | None
    run_id: str | None = None
    #: Seconds from the delivery to the start of that cycle's ``plan``.
    seconds_to_cycle: float | None = None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _started_cycle(session: Any, target_id: str, received_at: datetime, into: str | None) -> tuple[str | None,
                                                                                                  float | None]:
    """The run that read the change (the one it was coalesced into, else the first queued after it) and
    the seconds from the delivery to its ``plan`` starting."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

    from leviathan_lib.core.names import TASK_PLAN

    dag = dag_id(target_id)
    query = select(DagRun.run_id).where(DagRun.dag_id == dag)
    if into and into != "asset trigger":
        query = query.where(DagRun.run_id == into)
    else:
        query = query.where(DagRun.queued_at >= received_at).order_by(DagRun.queued_at)
    run_id = session.scalar(query.limit(1))
    if run_id is None:
        return None, None
    started = session.scalar(select(TaskInstance.start_date).where(
        TaskInstance.dag_id == dag, TaskInstance.run_id == run_id, TaskInstance.task_id == TASK_PLAN))
    seconds = None if started is None else round((_aware(started) - _aware(received_at)).total_seconds(), 1)
    return str(run_id), seconds


def last_deliveries(target_ids: set[str]) -> dict[str, LastDelivery]:
    """Each target's newest delivery (targets that never had one are left out)."""
    from airflow.utils.session import create_session

    if not target_ids:
        return {}
    out: dict[str, LastDelivery] = {}
    with create_session() as session:
        _schema.ensure(session)
        rows = session.execute(select(TARGET_STATE).where(TARGET_STATE.c.target_id.in_(sorted(target_ids)))).all()
        for row in rows:
            received = _aware(row.received_at)
            run_id, seconds = ((None, None) if row.outcome not in ("recorded", "coalesced")
                               else _started_cycle(session, row.target_id, received, row.coalesced_into))
            out[row.target_id] = LastDelivery(
                target_id=row.target_id, delivery_id=row.delivery_id, received_at=received, event=row.event,
                outcome=row.outcome, asset_event_id=row.asset_event_id, coalesced_into=row.coalesced_into,
                run_id=run_id, seconds_to_cycle=seconds)
    return out


def describe(outcomes: list[TargetOutcome]) -> list[dict[str, Any]]:
    """The outcomes as the receiver's JSON answer gives them."""
    return [{k: v for k, v in vars(o).items() if v is not None} for o in outcomes]
