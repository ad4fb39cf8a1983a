"""The wiring builds each thing once, however many times it is asked."""

from __future__ import annotations

from coretriage.wiring import Wiring


def test_the_store_is_opened_once(config):
    w = Wiring(config)
    first = w.store
    assert w.store is first and w.store is first
    w.close()


def test_a_store_opened_in_the_background_is_the_one_used(config):
    w = Wiring(config)
    w.open_store_in_background()
    first = w.store
    w.open_store_in_background()  # already open: nothing new
    assert w.store is first and w.store_ready
    w.close()


def test_an_error_while_opening_in_the_background_reaches_the_caller(config, tmp_path):
    import dataclasses

    import pytest

    from coretriage.store import SchemaError

    db = tmp_path / "newer.db"
    import sqlite3
    with sqlite3.connect(db) as c:  # a database from a future coretriage
        c.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        c.execute("INSERT INTO alembic_version VALUES ('9999')")
    w = Wiring(dataclasses.replace(config, database_url=f"sqlite:///{db}"))
    w.open_store_in_background()
    with pytest.raises(SchemaError, match="upgrade coretriage"):
        w.store


def test_a_sqlite_file_made_by_the_previous_coretriage_is_upgraded_by_the_store(config, tmp_path):
    import dataclasses
    import sqlite3

    from coretriage import migrations
    from coretriage.store import Store

    db = tmp_path / "older.db"
    url = f"sqlite:///{db}"
    migrations.upgrade(url, migrations.REVISIONS[-2])  # made by the previous coretriage
    w = Wiring(dataclasses.replace(config, database_url=url))
    w.open_store_in_background()
    assert isinstance(w.store, Store)  # which upgrades it: it owns the file
    w.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrations.HEAD
