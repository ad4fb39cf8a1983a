"""The store on a real PostgreSQL server: the same contract as on SQLite."""

import dataclasses

import pytest

from coretriage.ingest import ingest, reprocess
from coretriage.store import Store
from pgserver import postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_ingest_group_and_reprocess_on_postgres(pg_url, config, samples):
    config = dataclasses.replace(config, database_url=pg_url)
    store = Store(pg_url)
    try:
        a = [ingest(config, store, samples("segv", v).core, samples("segv", v).exe) for v in (0, 1, 2)]
        b = ingest(config, store, samples("assert_queue").core, samples("assert_queue").exe)
        assert len({x.crash.group_id for x in a}) == 1 and b.crash.group_id != a[0].crash.group_id
        group = store.group(a[0].crash.group_id)
        assert group.count == 3
        assert group.first_seen == min(x.crash.crashed_at for x in a)
        assert group.last_seen == max(x.crash.crashed_at for x in a)
        assert store.engine.dialect.name == "postgresql"
        # the rule set's version travels in the record from ingest to the row
        assert a[0].crash.rules_version and a[0].crash.rules_version == a[0].signature.rules_version
        assert ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe).new is False
        assert reprocess(config, store) == {"crashes": 4, "moved": 0, "alerts": 0}
        assert store.group(a[0].crash.group_id).count == 3
    finally:
        store.close()


def test_users_tokens_sessions_and_login_failures_on_postgres(pg_url):
    """What tests/integration/test_store_users.py checks on SQLite, in short."""
    import time

    from pgserver import create_database

    store = Store(create_database(pg_url, "web"))
    try:
        store.add_user("ann", "h1", "viewer")
        store.add_session("0" * 64, "ann", "csrf", time.time())
        store.add_token("ann", "a" * 64, expires=time.time() + 100)
        store.add_token("ann", "b" * 64, expires=time.time() - 1)
        assert store.user_for_token("a" * 64).name == "ann" and store.user_for_token("b" * 64) is None
        assert store.add_user("ann", "h2", "admin") is False and store.web_session("0" * 64) is None
        assert store.revoke_token("a" * 12).user == "ann" and store.user_for_token("a" * 64) is None
        store.add_login_failure(["u", "a"], 1000.0, 900)
        store.add_login_failure(["a"], 1010.0, 900)
        assert store.login_failures(["u", "a"]) == {"u": (1, 1000.0), "a": (2, 1000.0)}
    finally:
        store.close()
