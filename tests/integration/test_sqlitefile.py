"""A cold ``coretriage ingest`` files its crash with the stdlib's sqlite3
(``coretriage.sqlitefile``): the same crashes stored through it and through
the store must leave the same rows, counts and alert events, and it must
step aside for any database it should not write itself."""

from __future__ import annotations

import sqlite3

import pytest

from coretriage import migrations
from coretriage.alerts import SpikePolicy
from coretriage.records import Analyzed, CrashRecord, NotFound
from coretriage.sqlitefile import open_filer
from coretriage.store import Store

# columns whose value is the clock at the time of the write
CLOCK = {"crashes": ("ingested_at",), "alert_events": ("created", "next_try")}
TABLES = ("groups", "crashes", "group_facets", "group_days", "alert_events")


def _crash(n: int, signature: str, when: float, **kw) -> CrashRecord:
    return CrashRecord(id=f"c{n:012x}", crashed_at=when, analyzed=Analyzed(
        signature=signature, signature_data={"text": signature, "n": n},
        analysis={"core": "x", "modules": [{"build_id": f"b{n % 2}", "symbols": "none"}]},
        executable=f"/srv/app{n % 3}", signal="SIGSEGV" if n % 2 else None, quality=0.5 + n / 100,
        key_frame=f"frame{n}", search_text=signature + " x" * (n * 500)), core_file=f"cores/{n}.zst",
        host=f"web{n % 2}" if n % 4 else None, image="shop:1" if n % 3 else None,
        container=f"ctr{n}" if n > 6 else None, meta={"core_kind": "none", "dropped": "rate limit"} if n == 5 else {},
        analysis_seconds=0.25 * n, failure="no_frames" if n == 3 else None, **kw)


def _rows(path) -> dict:
    with sqlite3.connect(path) as db:
        out = {}
        for table in TABLES:
            cursor = db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            names = [d[0] for d in cursor.description]
            out[table] = [{k: v for k, v in zip(names, row) if k not in CLOCK.get(table, ())} for row in cursor]
        return out


def _plain(row) -> dict:
    return {k: v for k, v in vars(row).items() if k != "ingested_at"}


def _store(tmp_path, name) -> tuple[str, Store]:
    url = f"sqlite:///{tmp_path / name}"
    store = Store(url)  # made at head
    store.spike = SpikePolicy(window=100, baseline=1000, factor=2, minimum=3)
    return url, store


def test_same_rows_as_the_store(tmp_path):
    url, filer_store = _store(tmp_path, "filer.db")
    _, store = _store(tmp_path, "store.db")
    filer = open_filer(url, migrations.HEAD)
    assert filer is not None
    filer.spike = filer_store.spike
    steps = [_crash(n, f"sig {n % 4} | main", 1000.0 + n * 7 + (n % 3) * 90000) for n in range(14)]
    steps.append(_crash(3, "sig 3 | main", 5.0))  # the same core again: stored once
    steps.append(_crash(20, "sig 9 | main", 2000.0, bundle_id="b-1"))
    steps.append(_crash(21, "sig 9 | main", 2001.0, bundle_id="b-1"))  # the same bundle again
    steps += [_crash(n, "burst | main", 3000.0 + n * 20) for n in range(30, 40)]  # a spike that goes on
    for i, record in enumerate(steps):
        if i == 9:  # a resolved group crashes again: a regression; an ignored one raises nothing
            for s in (filer, store):  # (the filer hands set_state to the store)
                s.set_state(2, "resolved")
                s.set_state(3, "ignored")
        got, want = filer.add_crash(record), store.add_crash(record)
        assert (_plain(got[0]), got[1]) == (_plain(want[0]), want[1])
    expected = _rows(tmp_path / "store.db")
    assert {e["kind"] for e in expected["alert_events"]} == {"new", "regression", "spike"}
    assert _rows(tmp_path / "filer.db") == expected
    assert _plain(filer.crash("c000000000007")) == _plain(store.crash("c000000000007"))
    assert filer.crash_of_bundle("b-1").id == "c000000000014" and filer.crash_of_bundle("none") is None
    with pytest.raises(NotFound):
        filer.crash("c0000000000ff")
    assert filer.crashes_mentioning('"b1"') == store.crashes_mentioning('"b1"') != []
    assert filer.crashes_mentioning("b_") == store.crashes_mentioning("b_") == []
    filer.close()
    filer_store.close()
    store.close()


def test_steps_aside_where_the_store_must_decide(tmp_path):
    url, store = _store(tmp_path, "made.db")
    store.close()
    assert open_filer(url, "not-head") is None  # an upgrade is due
    assert open_filer(f"sqlite:///{tmp_path / 'none.db'}", migrations.HEAD) is None  # to be made
    assert not (tmp_path / "none.db").exists()
    assert open_filer("postgresql+psycopg://u@h/db", migrations.HEAD) is None
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all")
    assert open_filer(f"sqlite:///{junk}", migrations.HEAD) is None
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:  # made before migrations: no alembic_version
        db.execute("CREATE TABLE groups (id INTEGER PRIMARY KEY)")
    assert open_filer(f"sqlite:///{old}", migrations.HEAD) is None


def test_a_failed_write_leaves_nothing(tmp_path):
    url, store = _store(tmp_path, "atomic.db")
    filer = open_filer(url, migrations.HEAD)
    with sqlite3.connect(tmp_path / "atomic.db") as db:  # the crash insert fails after the group is made
        db.execute("CREATE TRIGGER no_crashes BEFORE INSERT ON crashes BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.IntegrityError):
        filer.add_crash(_crash(1, "sig | main", 1000.0))
    assert store.groups() == [] and store.alert_events() == []
    filer.close()
    store.close()
