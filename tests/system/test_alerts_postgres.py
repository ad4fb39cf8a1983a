"""Alert events on PostgreSQL: the outbox written with the crash, one `new`
per group, a regression, one spike per burst, and the sender's lease."""

import threading
import time

import pytest

from atonce import at_once
from coretriage.alerts import SpikePolicy
from coretriage.ingest import ingest_metadata
from coretriage.store import Store
from pgserver import create_database, postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def _crash(config, store, n: int, program: str, at: float, executable: str | None = None):
    """Crash c<n> (pid n) of /usr/bin/<program> (or ``executable``), stored from its metadata alone."""
    return ingest_metadata(config, store, f"c{n:012x}", executable=executable or f"/usr/bin/{program}", signal=11,
                           command_line=program, pid=n, reason="test", meta={}, crashed_at=at)


def test_events_on_postgres(pg_url, config):
    store = Store(create_database(pg_url, "alerts"))
    store.spike = SpikePolicy(window=60, baseline=3600, factor=10, minimum=5)
    try:
        def crash(n, at):
            return _crash(config, store, n, "burst", at)

        gid = crash(1, 1000.0).crash.group_id
        crash(2, 2000.0)
        store.set_state(gid, "resolved")
        crash(3, 3000.0)
        crash(4, 4000.0)
        for n in range(40):
            crash(100 + n, 10_000.0 + n)
        assert [e["kind"] for e in store.alert_events()] == ["new", "regression", "spike"]
        now = time.time()
        held = store.claim_events(now, 60)
        assert len(held) == 3 and store.claim_events(now, 60) == []  # leased: no second sender gets them
        store.mark_delivered(held[0]["id"], "hook")
        store.mark_delivered(held[0]["id"], "hook")  # a repeat is a no-op
        assert store.delivered_to(held[0]["id"]) == {"hook"}
        store.finish_event(held[0]["id"], done=True)
        assert [e["id"] for e in store.claim_events(now + 61, 60)] == [held[1]["id"], held[2]["id"]]
    finally:
        store.close()


def test_first_two_crashes_of_a_new_groupat_once(pg_url, config):
    """Two workers store the first two crashes of one new signature at the
    same moment: both look for the group, find none and insert it. A barrier
    on the groups INSERT makes that interleaving certain on every run (before
    the fix the second worker's add_crash failed on the unique signature)."""
    import sqlalchemy as sa

    url = create_database(pg_url, "race")
    stores = [Store(url), Store(url)]
    barrier = threading.Barrier(2, timeout=20)
    at_insert = []

    def hold(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO GROUPS"):
            at_insert.append(statement)
            barrier.wait()  # both have looked for the group and found none

    results = {}

    def worker(n):  # its failure is the one under test
        results[n] = _crash(config, stores[n], n + 1, "twin", 1000.0 + n)

    try:
        for s in stores:
            sa.event.listen(s.engine, "before_cursor_execute", hold)
        at_once(worker, range(2), timeout=60)
        assert len(at_insert) == 2  # the race happened: both inserted
        assert results[0].crash.group_id == results[1].crash.group_id
        with stores[0].engine.connect() as db:
            assert db.execute(sa.text("select count(*), sum(count) from groups")).one() == (1, 2)
        assert [e["kind"] for e in stores[0].alert_events()] == ["new"]
    finally:
        for s in stores:
            s.close()


def test_digest_senders_on_postgres_carry_each_event_once(pg_url, config):
    """Four senders, each with its own connection, drain one outbox to a
    digest channel at once: every event reaches the receiver in exactly one
    digest, and the database records which."""
    import json

    from alertreceivers import Receiver

    from coretriage.alerts import Channel
    from coretriage.notify import deliver_due

    url = create_database(pg_url, "digests")
    stores = [Store(url) for _ in range(4)]
    receiver = Receiver()
    try:
        stores[0].add_channel(Channel("batch", "webhook", receiver.url, digest=1))
        for n in range(80):
            _crash(config, stores[0], n + 1, "d", 1000.0 + n, executable=f"/usr/bin/d{n}")
        later = time.time() + 10
        start = threading.Barrier(4, timeout=20)

        def sender(store):
            start.wait()
            for k in range(4):
                deliver_due(config, store, now=later + k * 2)

        at_once(sender, stores)
        deliver_due(config, stores[0], now=later + 100)
        bodies = [json.loads(b) for _, b in receiver.posts]
        carried = [e["id"] for b in bodies for e in b["events"]]
        assert sorted(carried) == sorted(e["id"] for e in stores[0].alert_events())  # each event once
        assert len({b["id"] for b in bodies}) == len(bodies) == len(stores[0].digests())
        for d in stores[0].digests():  # the database says what each carried
            body = next(b for b in bodies if b["id"] == f"digest-{d['id']}")
            assert [e["id"] for e in stores[0].digest_events(d["id"])] == [e["id"] for e in body["events"]]
    finally:
        receiver.close()
        for s in stores:
            s.close()


def test_two_crashes_at_once_in_a_resolved_group_raise_one_regression(pg_url, config):
    """Both workers read the group's state at the same moment (a barrier
    before that read): the first locks the group's row, the second waits and
    then sees it regressed. Before the lock both saw it resolved."""
    import sqlalchemy as sa

    url = create_database(pg_url, "regress")
    stores = [Store(url), Store(url)]

    def crash(store, n):
        return _crash(config, store, n, "back", 1000.0 + n)

    barrier = threading.Barrier(2, timeout=20)
    armed = threading.Event()

    def hold(conn, cursor, statement, params, context, executemany):
        if armed.is_set() and statement.lstrip().upper().startswith("SELECT GROUPS.STATE"):
            barrier.wait()

    try:
        gid = crash(stores[0], 1).crash.group_id
        stores[0].set_state(gid, "resolved")
        for s in stores:
            sa.event.listen(s.engine, "before_cursor_execute", hold)
        armed.set()
        at_once(lambda n: crash(stores[n % 2], n), (2, 3), timeout=60)
        assert [e["kind"] for e in stores[0].alert_events()] == ["new", "regression"]
        assert stores[0].group(gid).state == "regressed" and stores[0].group(gid).count == 3
    finally:
        for s in stores:
            s.close()


def test_senders_on_postgres_send_each_event_once(pg_url, config):
    """Four senders (as four workers' would), each with its own connection,
    drain one outbox at once: every event reaches the receiver once."""
    from collections import Counter

    from alertreceivers import Receiver

    from coretriage.alerts import Channel
    from coretriage.notify import EVENT_HEADER, deliver_due

    url = create_database(pg_url, "senders")
    stores = [Store(url) for _ in range(4)]
    receiver = Receiver()
    try:
        stores[0].add_channel(Channel("hook", "webhook", receiver.url))
        for n in range(60):
            _crash(config, stores[0], n + 1, "s", 1000.0 + n, executable=f"/usr/bin/s{n}")
        start = threading.Barrier(4, timeout=20)

        def sender(store):
            start.wait()
            for _ in range(3):
                deliver_due(config, store)

        at_once(sender, stores)
        sent = Counter(h[EVENT_HEADER] for h, _ in receiver.posts)
        events = stores[0].alert_events()
        assert len(events) == 60 and all(e["done"] and not e["error"] for e in events)
        assert sent == Counter({str(e["id"]): 1 for e in events})
    finally:
        receiver.close()
        for s in stores:
            s.close()
