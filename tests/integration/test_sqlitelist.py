"""``coretriage list`` reads SQLite with the stdlib; it must give exactly the
store's rows, and step aside for anything it should not read itself."""

from __future__ import annotations

import sqlite3

from coretriage import migrations
from coretriage.records import Analyzed, CrashRecord
from coretriage.sqlitelist import recent_groups, sqlite_file


def _crash(n: int, signature: str, when: float) -> CrashRecord:
    return CrashRecord(id=f"c{n:012x}", crashed_at=when, analyzed=Analyzed(
        signature=signature, signature_data={"text": signature}, analysis={"core": "x"},
        executable=f"/srv/app{n % 3}", signal="SIGSEGV" if n % 2 else None, quality=0.5 + n / 100,
        key_frame=f"frame{n}", search_text=signature))


def test_same_rows_as_the_store(config, store):
    for n in range(12):
        store.add_crash(_crash(n, f"sig {n % 5} | main", 1000.0 + (n * 37) % 11))
    store.set_state(2, "resolved", note="fixed in 1.2 — \"quotes\" and <tags>")
    for limit in (1, 3, 100):
        assert recent_groups(config.database_url, migrations.HEAD, limit) == store.groups(limit=limit)


def test_steps_aside_where_the_store_must_decide(config, store, tmp_path):
    assert recent_groups(config.database_url, "not-head", 10) is None  # an upgrade is due
    assert recent_groups(f"sqlite:///{tmp_path / 'none.db'}", migrations.HEAD, 10) is None  # to be made
    assert recent_groups("postgresql+psycopg://u@h/db", migrations.HEAD, 10) is None
    assert sqlite_file("sqlite:///relative.db") is None and sqlite_file("sqlite:////a/b.db?mode=ro") is None
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all")
    assert recent_groups(f"sqlite:///{junk}", migrations.HEAD, 10) is None
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:  # made before migrations: no alembic_version
        db.execute("CREATE TABLE groups (id INTEGER PRIMARY KEY)")
    assert recent_groups(f"sqlite:///{old}", migrations.HEAD, 10) is None
