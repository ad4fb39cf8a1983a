"""Alert events on PostgreSQL: the outbox written with the crash, one `new`
per group, a regression, one spike per burst, and the sender's lease."""

import time

import pytest

from coretriage.alerts import SpikePolicy
from coretriage.ingest import ingest_metadata
from coretriage.store import Store
from pgserver import create_database, postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_events_on_postgres(pg_url, config):
    store = Store(create_database(pg_url, "alerts"))
    store.spike = SpikePolicy(window=60, baseline=3600, factor=10, minimum=5)
    try:
        def crash(n, at):
            return ingest_metadata(config, store, f"c{n:012x}", executable="/usr/bin/burst", signal=11,
                                   command_line="burst", pid=n, reason="test", meta={}, crashed_at=at)

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
