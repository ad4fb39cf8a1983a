"""A crash filed in a SQLite database with the standard library's sqlite3.

A cold ``coretriage ingest`` of a small core is mostly start-up, and
importing SQLAlchemy (with the store's tables) costs more CPU than gdb's
whole backtrace of such a core. For a plain SQLite database file already at
the schema's head, ``CrashFiler`` does what ingest asks of a store: the
crash by id (``crash``), the crashes naming a build-id
(``crashes_mentioning``), and ``add_crash``, which writes the same rows,
counts and alert events as ``Store.add_crash``, in one ``BEGIN IMMEDIATE``
transaction (so the reads that decide a group and its alerts and the writes
cannot interleave with another writer's). Anything else asked of it (symbols
that arrived re-analyze other crashes, ``coretriage.resymbol``) opens the
real store and is answered there.

``open_filer`` answers None for every other database (another backend, no
file yet, one to upgrade, a locked or odd file): the caller opens the store,
which knows what to do. Tests store the same crashes both ways and compare
every row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import fields

from coretriage.drops import drop_reason
from coretriage.records import CrashRecord, CrashRow, NotFound
from coretriage.sqlitelist import sqlite_file

FACETS = ("host", "image", "container")  # the store's group_facets kinds
CRASH_COLUMNS = tuple(f.name for f in fields(CrashRow))
_SELECT_CRASH = f"SELECT {', '.join(CRASH_COLUMNS)} FROM crashes"


def open_filer(url: str, head: str) -> CrashFiler | None:
    """A filer for the SQLite file at ``url`` when it is at ``head``, else None."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None
    try:
        # transactions are ours; opened in a thread (Wiring), used by the one that ingests
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        found = db.execute("SELECT version_num FROM alembic_version").fetchone()
        if found is None or found[0] != head:
            db.close()
            return None
        db.execute("PRAGMA journal_mode=WAL")  # as the store's connections: the web UI reads meanwhile
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        db.close()
        return None
    return CrashFiler(url, db)


def _crash(row) -> CrashRow:
    data = dict(zip(CRASH_COLUMNS, row))
    for key in ("analysis", "signature", "meta"):
        data[key] = json.loads(data[key] or "{}")
    return CrashRow(**data)


class CrashFiler:
    spike = None  # coretriage.alerts.SpikePolicy; its defaults when None (as Store.spike)

    def __init__(self, url: str, db: sqlite3.Connection):
        self.url = url
        self._db = db
        self._store = None

    def __getattr__(self, name: str):
        """What the filer does not do itself, the store does (opened on first use)."""
        if name.startswith("_"):
            raise AttributeError(name)
        if self._store is None:
            from coretriage.store import Store

            self._store = Store(self.url)
            self._store.spike = self.spike
        return getattr(self._store, name)

    def close(self) -> None:
        self._db.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- reads ---------------------------------------------------------------
    def crash(self, crash_id: str) -> CrashRow:
        row = self._db.execute(f"{_SELECT_CRASH} WHERE id = ?", (crash_id,)).fetchone()
        if row is None:
            raise NotFound(f"no crash {crash_id}")
        return _crash(row)

    def crash_of_bundle(self, bundle_id: str) -> CrashRow | None:
        row = self._db.execute(f"{_SELECT_CRASH} WHERE bundle_id = ?", (bundle_id,)).fetchone()
        return _crash(row) if row is not None else None

    def crashes_mentioning(self, text: str) -> list[tuple[str, int]]:
        """As ``Store.crashes_mentioning``: (crash id, group id), oldest first."""
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [tuple(r) for r in self._db.execute(
            "SELECT id, group_id FROM crashes WHERE analysis LIKE ? ESCAPE '\\' ORDER BY crashed_at",
            (f"%{escaped}%",))]

    # -- the write -------------------------------------------------------------
    def add_crash(self, record: CrashRecord) -> tuple[CrashRow, bool]:
        """``Store.add_crash``: the row and whether it was new."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            done = self._add(record)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return done

    def _add(self, record: CrashRecord) -> tuple[CrashRow, bool]:
        db, a = self._db, record.analyzed
        existing = None
        if record.bundle_id:  # a bundle is stored once, whatever its core has become since
            existing = db.execute(f"{_SELECT_CRASH} WHERE bundle_id = ?", (record.bundle_id,)).fetchone()
        if existing is None:
            existing = db.execute(f"{_SELECT_CRASH} WHERE id = ?", (record.id,)).fetchone()
        if existing is not None:
            return _crash(existing), False
        group_id, created = self._group_for(a.signature, a.executable, a.signal, a.quality, record.crashed_at)
        state_before = db.execute("SELECT state FROM groups WHERE id = ?", (group_id,)).fetchone()[0]
        # a crash in a resolved group is a regression
        db.execute("UPDATE groups SET key_frame = ?, search_text = ?, "
                   "state = CASE WHEN state = 'resolved' THEN 'regressed' ELSE state END WHERE id = ?",
                   (a.key_frame, a.search_text[:4000], group_id))
        meta = record.meta or {}
        row = dict(id=record.id, group_id=group_id, crashed_at=record.crashed_at, ingested_at=time.time(),
                   executable=a.executable, signal=a.signal, host=record.host, container=record.container,
                   image=record.image, core_file=record.core_file, exe_file=record.exe_file,
                   sysroot=record.sysroot, analysis=json.dumps(a.analysis), signature=json.dumps(a.signature_data),
                   meta=json.dumps(meta), rules_version=a.rules_version, analysis_seconds=record.analysis_seconds,
                   dropped=drop_reason(meta), bundle_id=record.bundle_id, failure=record.failure)
        db.execute(f"INSERT INTO crashes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   tuple(row.values()))
        db.execute("UPDATE groups SET count = count + 1, first_seen = min(first_seen, ?), "
                   "last_seen = max(last_seen, ?) WHERE id = ?", (record.crashed_at, record.crashed_at, group_id))
        for facet in FACETS:
            value = getattr(record, facet)
            if value is not None:
                db.execute("INSERT INTO group_facets (group_id, facet, value, count) VALUES (?, ?, ?, 1) "
                           "ON CONFLICT (group_id, facet, value) DO UPDATE SET count = count + 1",
                           (group_id, facet, value))
        db.execute("INSERT INTO group_days (group_id, day, count) VALUES (?, ?, 1) "
                   "ON CONFLICT (group_id, day) DO UPDATE SET count = count + 1",
                   (group_id, int(record.crashed_at // 86400)))
        self._raise_alerts(group_id, record.id, record.crashed_at, created, state_before)
        return _crash(db.execute(f"{_SELECT_CRASH} WHERE id = ?", (record.id,)).fetchone()), True

    def _group_for(self, signature, executable, signal, quality, seen) -> tuple[int, bool]:
        found = self._db.execute("SELECT id FROM groups WHERE signature = ?", (signature,)).fetchone()
        if found is not None:
            return found[0], False
        made = self._db.execute(
            "INSERT INTO groups (signature, executable, signal, count, first_seen, last_seen, quality, state, "
            "note, search_text) VALUES (?, ?, ?, 0, ?, ?, ?, 'new', '', '')",
            (signature, executable, signal, seen, seen, quality))
        return made.lastrowid, True

    def _raise_alerts(self, group_id: int, crash_id: str, at: float, created: bool, state_before: str) -> None:
        """As ``Store._raise_alerts``: the crash's alert events into the outbox."""
        from coretriage.alerts import Seen, SpikePolicy, decide, dedup_key, spiking

        db, policy = self._db, self.spike or SpikePolicy()

        def count(lo: float, hi: float) -> int:
            return db.execute("SELECT count(*) FROM crashes WHERE group_id = ? AND crashed_at > ? "
                              "AND crashed_at <= ?", (group_id, lo, hi)).fetchone()[0]

        open_spike = db.execute("SELECT id FROM alert_events WHERE group_id = ? AND kind = 'spike' AND until >= ? "
                                "AND at <= ? LIMIT 1", (group_id, at, at)).fetchone()
        seen = Seen(created=created, state_before=state_before, in_window=count(at - policy.window, at),
                    in_baseline=count(at - policy.window - policy.baseline, at - policy.window),
                    spike_open=open_spike is not None)
        if open_spike is not None and spiking(seen, policy):  # the spike goes on: one alert for all of it
            db.execute("UPDATE alert_events SET until = CASE WHEN until < ? THEN ? ELSE until END WHERE id = ?",
                       (at + policy.window, at + policy.window, open_spike[0]))
        for kind in decide(seen, policy):
            key = dedup_key(kind, group_id, crash_id)
            if db.execute("SELECT id FROM alert_events WHERE dedup = ?", (key,)).fetchone() is not None:
                continue
            now = time.time()
            db.execute("INSERT INTO alert_events (kind, dedup, group_id, crash_id, at, until, created, attempts, "
                       "next_try) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                       (kind, key, group_id, crash_id, at, at + policy.window if kind == "spike" else None, now, now))
