"""A crash and the group made for it are stored together or not at all, on
SQLite too: pysqlite begins a transaction only before its first write, so a
savepoint taken before any write used to begin, and on release commit, a
transaction of its own (the collector's test saw a group with 0 crashes)."""

import sqlite3

from coretriage.store import Store


def test_a_group_made_in_a_transaction_is_invisible_until_it_commits(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'ct.db'}")
    try:
        other = sqlite3.connect(tmp_path / "ct.db")
        with store.engine.begin() as db:
            group_id, made = store._group_for(db, "sig | x", "/bin/x", "SIGSEGV", 1.0, 1.0)
            assert made and other.execute("SELECT count(*) FROM groups").fetchone()[0] == 0
        assert other.execute("SELECT id FROM groups").fetchall() == [(group_id,)]
        other.close()
    finally:
        store.close()
