"""Crashes and groups in a database: SQLite by default, any SQLAlchemy URL.

A group is one signature; it keeps its count and first and last seen so
that listing groups never scans crashes. Crash ids (``c`` + 12 hex digits
of the core's SHA-256) and group ids (``g`` + a number) never collide, and
storing the same core twice is a no-op.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

groups = sa.Table(
    "groups", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("signature", sa.Text, nullable=False, unique=True),
    sa.Column("executable", sa.Text),
    sa.Column("signal", sa.String(16)),
    sa.Column("count", sa.Integer, nullable=False, default=0),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("quality", sa.Float, nullable=False, default=0.0),
    sa.Column("state", sa.String(16), nullable=False, default="new"),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Index("ix_groups_last_seen", "last_seen"),
)

crashes = sa.Table(
    "crashes", metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("crashed_at", sa.Float, nullable=False),
    sa.Column("ingested_at", sa.Float, nullable=False),
    sa.Column("executable", sa.Text),
    sa.Column("signal", sa.String(16)),
    sa.Column("host", sa.Text),
    sa.Column("container", sa.Text),
    sa.Column("image", sa.Text),
    sa.Column("core_file", sa.Text),  # relative to the data dir
    sa.Column("exe_file", sa.Text),
    sa.Column("sysroot", sa.Text),
    sa.Column("analysis", sa.Text, nullable=False),  # Analysis.to_dict() as JSON
    sa.Column("signature", sa.Text, nullable=False),  # Signature as JSON
    sa.Column("meta", sa.Text, nullable=False, default="{}"),  # collector metadata
    sa.Index("ix_crashes_group", "group_id", "crashed_at"),
)


class NotFound(Exception):
    pass


@dataclass(frozen=True)
class GroupRow:
    id: int
    signature: str
    executable: str | None
    signal: str | None
    count: int
    first_seen: float
    last_seen: float
    quality: float
    state: str
    note: str

    @property
    def ref(self) -> str:
        return f"g{self.id}"


@dataclass(frozen=True)
class CrashRow:
    id: str
    group_id: int
    crashed_at: float
    ingested_at: float
    executable: str | None
    signal: str | None
    host: str | None
    container: str | None
    image: str | None
    core_file: str | None
    exe_file: str | None
    sysroot: str | None
    analysis: dict[str, Any]
    signature: dict[str, Any]
    meta: dict[str, Any]

    @property
    def group_ref(self) -> str:
        return f"g{self.group_id}"


def _group(row) -> GroupRow:
    return GroupRow(**row._mapping)


def _crash(row) -> CrashRow:
    data = dict(row._mapping)
    for key in ("analysis", "signature", "meta"):
        data[key] = json.loads(data[key] or "{}")
    return CrashRow(**data)


class Store:
    def __init__(self, url: str):
        kwargs = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ---------------------------------------------------------
    def add_crash(self, *, crash_id: str, signature: str, signature_data: dict, analysis: dict,
                  crashed_at: float, executable: str | None, signal: str | None, quality: float,
                  core_file: str | None = None, exe_file: str | None = None, sysroot: str | None = None,
                  host: str | None = None, container: str | None = None, image: str | None = None,
                  meta: dict | None = None) -> tuple[CrashRow, bool]:
        """Store one crash in its group. Returns the row and whether it was new."""
        with self.engine.begin() as db:
            existing = db.execute(sa.select(crashes).where(crashes.c.id == crash_id)).first()
            if existing is not None:
                return _crash(existing), False
            group_id = self._group_for(db, signature, executable, signal, quality, crashed_at)
            db.execute(crashes.insert().values(
                id=crash_id, group_id=group_id, crashed_at=crashed_at, ingested_at=time.time(),
                executable=executable, signal=signal, host=host, container=container, image=image,
                core_file=core_file, exe_file=exe_file, sysroot=sysroot,
                analysis=json.dumps(analysis), signature=json.dumps(signature_data),
                meta=json.dumps(meta or {})))
            self._touch(db, group_id, crashed_at, +1)
            row = db.execute(sa.select(crashes).where(crashes.c.id == crash_id)).one()
            return _crash(row), True

    def _group_for(self, db, signature, executable, signal, quality, seen) -> int:
        found = db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()
        if found is not None:
            return found
        result = db.execute(groups.insert().values(
            signature=signature, executable=executable, signal=signal, count=0,
            first_seen=seen, last_seen=seen, quality=quality, state="new", note=""))
        return result.inserted_primary_key[0]

    def _touch(self, db, group_id: int, seen: float, delta: int) -> None:
        g = groups.c
        # SQLite spells two-argument min/max as min()/max(), PostgreSQL as least()/greatest()
        lo, hi = (sa.func.min, sa.func.max) if db.dialect.name == "sqlite" else (sa.func.least, sa.func.greatest)
        db.execute(groups.update().where(g.id == group_id).values(
            count=g.count + delta, first_seen=lo(g.first_seen, seen), last_seen=hi(g.last_seen, seen)))

    def update_analysis(self, crash_id: str, *, signature: str, signature_data: dict, analysis: dict,
                        executable: str | None, signal: str | None, quality: float) -> None:
        """Replace a crash's analysis (reprocess); moves it between groups."""
        with self.engine.begin() as db:
            db.execute(crashes.update().where(crashes.c.id == crash_id).values(
                analysis=json.dumps(analysis), signature=json.dumps(signature_data),
                executable=executable, signal=signal))
            old = db.execute(sa.select(crashes.c.group_id, crashes.c.crashed_at)
                             .where(crashes.c.id == crash_id)).one()
            target = self._group_for(db, signature, executable, signal, quality, old.crashed_at)
            if target != old.group_id:
                db.execute(crashes.update().where(crashes.c.id == crash_id).values(group_id=target))
            db.execute(groups.update().where(groups.c.id == target).values(quality=quality))

    def rename_group(self, group_id: int, signature: str) -> bool:
        """Give a group a new signature, keeping its id, when no other group has it."""
        with self.engine.begin() as db:
            taken = db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()
            if taken is not None and taken != group_id:
                return False
            db.execute(groups.update().where(groups.c.id == group_id).values(signature=signature))
            return True

    def recount(self) -> None:
        """Recompute every group's count and first/last seen from its crashes;
        drop groups left empty."""
        with self.engine.begin() as db:
            stats = db.execute(sa.select(crashes.c.group_id, sa.func.count(), sa.func.min(crashes.c.crashed_at),
                                         sa.func.max(crashes.c.crashed_at)).group_by(crashes.c.group_id)).all()
            seen = set()
            for gid, count, first, last in stats:
                seen.add(gid)
                db.execute(groups.update().where(groups.c.id == gid).values(
                    count=count, first_seen=first, last_seen=last))
            all_ids = set(db.execute(sa.select(groups.c.id)).scalars())
            empty = all_ids - seen
            if empty:
                db.execute(groups.delete().where(groups.c.id.in_(empty)))

    def set_state(self, group_id: int, state: str, note: str | None = None) -> None:
        values = {"state": state}
        if note is not None:
            values["note"] = note
        with self.engine.begin() as db:
            db.execute(groups.update().where(groups.c.id == group_id).values(**values))

    # -- reading ---------------------------------------------------------
    def groups(self, limit: int = 100, offset: int = 0) -> list[GroupRow]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(groups).order_by(groups.c.last_seen.desc(), groups.c.id.desc())
                              .limit(limit).offset(offset)).all()
        return [_group(r) for r in rows]

    def group(self, group_id: int) -> GroupRow:
        with self.engine.connect() as db:
            row = db.execute(sa.select(groups).where(groups.c.id == group_id)).first()
        if row is None:
            raise NotFound(f"no group g{group_id}")
        return _group(row)

    def crash(self, crash_id: str) -> CrashRow:
        with self.engine.connect() as db:
            row = db.execute(sa.select(crashes).where(crashes.c.id == crash_id)).first()
        if row is None:
            raise NotFound(f"no crash {crash_id}")
        return _crash(row)

    def crashes_of(self, group_id: int, limit: int = 1000) -> list[CrashRow]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(crashes).where(crashes.c.group_id == group_id)
                              .order_by(crashes.c.crashed_at.desc()).limit(limit)).all()
        return [_crash(r) for r in rows]

    def crash_ids(self) -> list[tuple[str, int]]:
        with self.engine.connect() as db:
            return [tuple(r) for r in db.execute(sa.select(crashes.c.id, crashes.c.group_id)
                                                 .order_by(crashes.c.crashed_at)).all()]


def _sqlite_pragmas(conn, _record) -> None:
    # WAL lets the web UI read while the collector writes
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
