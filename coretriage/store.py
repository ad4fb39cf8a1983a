"""Crashes and groups in a database: SQLite by default, any SQLAlchemy URL.

A group is one signature; it keeps its count and first and last seen, and
``group_facets`` / ``group_days`` keep its crashes per host, image,
container and day, so that listing groups or showing one never counts
crashes (the loudest bug of a fleet has 100,000). Crash ids (``c`` + 12 hex digits
of the core's SHA-256) and group ids (``g`` + a number) never collide, and
storing the same core twice is a no-op.

The schema belongs to the migrations (``coretriage/migrations``, Alembic);
the tables below mirror their head for queries. Opening a store checks the
database's revision (one query) and, when it is not at head:

- an empty database, on any backend, is brought to head: there is nothing
  to lose, and a fresh ``make run`` or ``coretriage ingest`` just works;
- SQLite (one host, one data dir) is upgraded in place, a database made
  before migrations included: whoever runs the new code owns the file;
- any other database (PostgreSQL, shared by many hosts whose older workers
  may still be writing) is left alone: opening fails with one line asking
  for ``coretriage db upgrade``, the operator's explicit step;
- a database newer than this code is never touched: opening fails.
"""

from __future__ import annotations

import json
import os
import re
import time

import sqlalchemy as sa

from analyzer.errors import CoretriageError
from coretriage import migrations
from coretriage.drops import drop_reason
from coretriage.records import (Analyzed, CrashRecord, CrashRow, GroupQuery, GroupRow, NotFound,  # noqa: F401
                                SessionRow, TokenRow, User)
from coretriage.users import DEFAULT_TOKEN_DAYS, token_id

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
    sa.Column("key_frame", sa.Text),  # first program frame, for the group list
    sa.Column("search_text", sa.Text, nullable=False, default=""),  # signature + frame names
    sa.Column("renamed_from", sa.Text),  # the signature before symbols arrived (coretriage.resymbol)
    sa.Column("renamed_at", sa.Float),
    sa.Index("ix_groups_last_seen", "last_seen"),
    sa.Index("ix_groups_count", "count"),
    sa.Index("ix_groups_first_seen", "first_seen"),
    sa.Index("ix_groups_executable", "executable"),
    sa.Index("ix_groups_signal", "signal"),
    # PostgreSQL: trigrams serve the search's ILIKE '%word%' (migration 0007); SQLite scans
    sa.Index("ix_groups_search_trgm", "search_text", postgresql_using="gin",
             postgresql_ops={"search_text": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
    sqlite_autoincrement=True,  # migration 0008: an id is never reused
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
    sa.Column("rules_version", sa.Text),  # signature rule set the crash was grouped with
    sa.Column("analysis_seconds", sa.Float),  # how long its analysis took; null: metadata only
    sa.Column("dropped", sa.String(16)),  # why its full core was not kept (coretriage.drops.REASONS)
    sa.Column("bundle_id", sa.String(64)),  # the spool bundle it was stored from (null: ingested by hand)
    sa.Column("failure", sa.String(32)),  # why its analysis gave no backtrace (a problem code; migration 0010)
    sa.Index("ix_crashes_group", "group_id", "crashed_at"),
    sa.Index("ux_crashes_bundle", "bundle_id", unique=True),
    # (group_id, x) cover the per-group facets without reading the rows;
    # (x, group_id) serve the filters
    sa.Index("ix_crashes_group_host", "group_id", "host"),
    sa.Index("ix_crashes_group_image", "group_id", "image"),
    sa.Index("ix_crashes_group_container", "group_id", "container"),
    sa.Index("ix_crashes_host", "host", "group_id"),
    sa.Index("ix_crashes_image", "image", "group_id"),
    sa.Index("ix_crashes_container", "container", "group_id"),
)

# Per-group counts kept with every crash stored (add_crash, update_analysis,
# recount), so the group list and a group page never count a group's crashes
group_facets = sa.Table(
    "group_facets", metadata,
    sa.Column("group_id", sa.Integer, primary_key=True),
    sa.Column("facet", sa.String(16), primary_key=True),  # host | image | container
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

group_days = sa.Table(
    "group_days", metadata,
    sa.Column("group_id", sa.Integer, primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),  # floor(crashed_at / 86400), UTC
    sa.Column("count", sa.Integer, nullable=False),
)
FACETS = ("host", "image", "container")

users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # viewer | admin
    sa.Column("created", sa.Float, nullable=False),
)

tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the token
    sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float),  # refused from then on; null (never set) is refused too
    sa.Column("last_used", sa.Float),
)

web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # sha256 of the cookie's random id
    sa.Column("user", sa.String(64), sa.ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Index("ix_web_sessions_user", "user"),
)

login_failures = sa.Table(
    "login_failures", metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # sha256 of "user\0NAME" or "addr\0IP"
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("first", sa.Float, nullable=False),  # the window starts at the first failure
)

alert_channels = sa.Table(
    "alert_channels", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("secret", sa.Text),
    sa.Column("events", sa.String(64), nullable=False),
    sa.Column("executable", sa.Text),
    sa.Column("host", sa.Text),
    sa.Column("image", sa.Text),
    sa.Column("quiet", sa.Float, nullable=False, server_default="0"),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("digest", sa.Float, nullable=False, server_default="0"),  # seconds; 0: no digest
)

alert_events = sa.Table(  # the outbox (coretriage.alerts decides, coretriage.notify sends)
    "alert_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("dedup", sa.String(80), nullable=False, unique=True),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("crash_id", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("until", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_try", sa.Float, nullable=False),
    sa.Column("lease", sa.Float),
    sa.Column("done", sa.Float),
    sa.Column("error", sa.Text),
    sa.Index("ix_alert_events_due", "done", "next_try"),
    sa.Index("ix_alert_events_group", "group_id", "kind", "until"),
)

alert_deliveries = sa.Table(
    "alert_deliveries", metadata,
    sa.Column("event_id", sa.Integer, primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("sent", sa.Float, nullable=False),
    sa.Column("skipped", sa.Boolean, nullable=False, server_default=sa.false()),
)

alert_digests = sa.Table(  # one message carrying a channel's collected events (migration 0008)
    "alert_digests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_try", sa.Float, nullable=False),
    sa.Column("lease", sa.Float),
    sa.Column("done", sa.Float),
    sa.Column("error", sa.Text),
    sa.Index("ix_alert_digests_due", "done", "next_try"),
)

alert_digest_items = sa.Table(  # which events each digest carried
    "alert_digest_items", metadata,
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.Integer, primary_key=True),
    sa.Column("queued", sa.Float, nullable=False),
    sa.Column("digest_id", sa.Integer),
    sa.Index("ix_alert_digest_items_open", "channel", "digest_id", "queued"),
)

hosts = sa.Table(  # hosts that upload (coretriage.hosts); only their token's hash is kept
    "hosts", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_heartbeat", sa.Float),
    sa.Column("report", sa.Text),
    sa.Column("last_crash_at", sa.Float),
)

bundle_claims = sa.Table(  # a worker's hold on the bundle it analyzes (coretriage.claims)
    "bundle_claims", metadata,
    sa.Column("bundle_id", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)

STATES = ("new", "acknowledged", "resolved", "regressed", "ignored")


class SchemaError(CoretriageError):
    """The database's schema is not one this code may use or upgrade by itself."""


SORTS = {"last_seen": groups.c.last_seen, "count": groups.c.count, "first_seen": groups.c.first_seen}


_GROUP_FILTERS = ("executable", "signal", "state", "image", "container", "host")


def _group_queries(filters: tuple[str, ...], since: bool, until: bool, words: int, sort: str, capped: bool):
    """find_groups' statements for one shape of query: the page, the count
    and the page for a few matches (below), with bind parameters named for
    GroupQuery's fields (word0... the search's; count_limit, when
    ``capped``, the most rows the count reads)."""
    g, c = groups.c, crashes.c
    where = []
    for name in filters:
        if name in ("executable", "signal", "state"):
            where.append(g[name] == sa.bindparam(name))
        else:  # a crash's: the groups with one such crash
            where.append(g.id.in_(sa.select(c.group_id).where(c[name] == sa.bindparam(name))))
    if since:
        where.append(g.last_seen >= sa.bindparam("since"))
    if until:
        where.append(g.first_seen <= sa.bindparam("until"))
    for i in range(words):
        where.append(g.search_text.ilike(sa.bindparam(f"word{i}", type_=sa.Text), escape="\\"))

    def page(order):
        return (sa.select(groups).where(*where).order_by(order.desc(), g.id.desc())
                .limit(sa.bindparam("limit", type_=sa.Integer)).offset(sa.bindparam("offset", type_=sa.Integer)))

    if capped:
        some = sa.select(g.id).where(*where).limit(sa.bindparam("count_limit", type_=sa.Integer)).subquery()
        count = sa.select(sa.func.count()).select_from(some)
    else:
        count = sa.select(sa.func.count()).select_from(groups).where(*where)
    # Sorting by an expression keeps PostgreSQL off the sort column's index:
    # for a word few groups hold it then takes them from the trigram index
    # and sorts them, instead of walking the index until a page of matches
    # turns up (thousands of rows, as it cannot tell how few match).
    return page(SORTS[sort]), count, page(SORTS[sort] + 0)


def _group(row) -> GroupRow:
    return GroupRow(**row._mapping)


def _crash(row) -> CrashRow:
    data = dict(row._mapping)
    for key in ("analysis", "signature", "meta"):
        data[key] = json.loads(data[key] or "{}")
    return CrashRow(**data)


def _private_sqlite(url: str) -> None:
    """A SQLite database file is made 0600 before SQLite opens it (it would
    use the umask); its -wal, -shm and -journal copy that mode."""
    from coretriage.datadir import private_file

    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:") or not os.path.isdir(os.path.dirname(path) or "."):
        return  # nothing on disk, or SQLite's own error says what is wrong
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        private_file(path + suffix, create=False)


class Store:
    spike = None  # coretriage.alerts.SpikePolicy; its defaults when None (Wiring sets the configured one)

    def __init__(self, url: str):
        kwargs = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            _private_sqlite(url)
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._reader = (None, None)  # (engine, its reads engine): _reads
        self._statements: dict = {}  # _built
        try:
            self._open_schema()
        except BaseException:
            self.engine.dispose()
            raise

    def _open_schema(self) -> None:
        """The policy of the module docstring."""
        with self.engine.connect() as db:
            found = migrations.revision_of(db)
        if found == migrations.HEAD:
            return
        if found not in (None, migrations.UNVERSIONED, *migrations.REVISIONS):
            raise SchemaError(f"the database is at schema revision {found}, which this coretriage does not "
                              f"know (its newest is {migrations.HEAD}): upgrade coretriage")
        if found is not None and self.engine.dialect.name != "sqlite":
            raise SchemaError(f"the database schema is at {found}, this coretriage needs "
                              f"{migrations.HEAD}: run `coretriage db upgrade`")
        migrations.upgrade(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def _reads(self) -> sa.Engine:
        """The engine for the pages' reads. On PostgreSQL, in autocommit:
        one round trip per statement, not BEGIN, the statement and ROLLBACK;
        the same isolation, as under READ COMMITTED each statement of a
        transaction takes its own snapshot anyway. (pysqlite begins no
        transaction for a SELECT.) It follows ``engine`` if that is replaced."""
        engine = self.engine
        if self._reader[0] is not engine:
            self._reader = (engine, engine.execution_options(isolation_level="AUTOCOMMIT")
                            if engine.dialect.name == "postgresql" else engine)
        return self._reader[1]

    # -- writing ---------------------------------------------------------
    def add_crash(self, record: CrashRecord) -> tuple[CrashRow, bool]:
        """Store one crash in its group. Returns the row and whether it was new."""
        try:
            return self._add_crash(record)
        except sa.exc.IntegrityError as exc:
            # another worker stored this core or this bundle in the meantime: theirs stands
            found = self.crash_of_bundle(record.bundle_id) if record.bundle_id else None
            if found is None:
                try:
                    found = self.crash(record.id)
                except NotFound:
                    raise exc from None  # some other conflict
            return found, False

    def _add_crash(self, record: CrashRecord) -> tuple[CrashRow, bool]:
        a = record.analyzed
        with self.engine.begin() as db:
            existing = None
            if record.bundle_id:  # a bundle is stored once, whatever its core has become since
                existing = db.execute(sa.select(crashes).where(crashes.c.bundle_id == record.bundle_id)).first()
            if existing is None:
                existing = db.execute(sa.select(crashes).where(crashes.c.id == record.id)).first()
            if existing is not None:
                return _crash(existing), False
            group_id, created = self._group_for(db, a.signature, a.executable, a.signal, a.quality,
                                                record.crashed_at)
            g = groups.c
            # the group's row locked (PostgreSQL; SQLite: the database) until this
            # crash is stored: a second worker's crash of the group waits here, then
            # sees this one (one regression, spike windows that count both)
            _write_lock(db)
            state_before = db.execute(sa.select(g.state).where(g.id == group_id).with_for_update()).scalar()
            db.execute(groups.update().where(g.id == group_id).values(
                key_frame=a.key_frame, search_text=a.search_text[:4000],
                # a crash in a resolved group is a regression
                state=sa.case((g.state == "resolved", "regressed"), else_=g.state)))
            db.execute(crashes.insert().values(
                id=record.id, group_id=group_id, crashed_at=record.crashed_at, ingested_at=time.time(),
                executable=a.executable, signal=a.signal, host=record.host, container=record.container,
                image=record.image, core_file=record.core_file, exe_file=record.exe_file,
                sysroot=record.sysroot, analysis=json.dumps(a.analysis),
                signature=json.dumps(a.signature_data), meta=json.dumps(record.meta or {}),
                rules_version=a.rules_version, analysis_seconds=record.analysis_seconds,
                dropped=drop_reason(record.meta or {}), bundle_id=record.bundle_id, failure=record.failure))
            self._touch(db, group_id, record.crashed_at, +1)
            _count_crash(db, group_id, {"host": record.host, "image": record.image, "container": record.container},
                         record.crashed_at, +1)
            self._raise_alerts(db, group_id, record.id, record.crashed_at, created, state_before)
            row = db.execute(sa.select(crashes).where(crashes.c.id == record.id)).one()
            return _crash(row), True

    def _raise_alerts(self, db, group_id: int, crash_id: str, at: float, created: bool, state_before: str) -> None:
        """The crash's alert events into the outbox, in the crash's own transaction."""
        from coretriage.alerts import Seen, SpikePolicy, decide, dedup_key, spiking

        policy = self.spike or SpikePolicy()
        c, e = crashes.c, alert_events.c

        def count(lo: float, hi: float) -> int:
            return db.execute(sa.select(sa.func.count()).select_from(crashes).where(
                c.group_id == group_id, c.crashed_at > lo, c.crashed_at <= hi)).scalar()

        open_spike = db.execute(sa.select(e.id).where(
            e.group_id == group_id, e.kind == "spike", e.until >= at, e.at <= at).limit(1)).scalar()
        seen = Seen(created=created, state_before=state_before,
                    in_window=count(at - policy.window, at),
                    in_baseline=count(at - policy.window - policy.baseline, at - policy.window),
                    spike_open=open_spike is not None)
        if open_spike is not None and spiking(seen, policy):  # the spike goes on: one alert for all of it
            db.execute(alert_events.update().where(e.id == open_spike).values(
                until=sa.case((e.until < at + policy.window, at + policy.window), else_=e.until)))
        for kind in decide(seen, policy):
            key = dedup_key(kind, group_id, crash_id)
            if db.execute(sa.select(e.id).where(e.dedup == key)).first() is not None:
                continue
            self._insert_event(db, kind, key, group_id, crash_id, at, at + policy.window if kind == "spike" else None)

    @staticmethod
    def _insert_event(db, kind: str, key: str, group_id: int, crash_id: str, at: float, until: float | None) -> bool:
        now = time.time()
        try:
            with _savepoint(db):  # another worker's same event: keep theirs
                db.execute(alert_events.insert().values(
                    kind=kind, dedup=key, group_id=group_id, crash_id=crash_id, at=at, until=until,
                    created=now, attempts=0, next_try=now))
            return True
        except sa.exc.IntegrityError:
            return False

    def alerted_groups(self, group_ids) -> set[int]:
        """Those of the groups that raised a ``new`` event, or are ignored (coretriage.alerts.new_after_reprocess)."""
        ids = list(group_ids)
        e, g = alert_events.c, groups.c
        with self.engine.connect() as db:
            told = set(db.execute(sa.select(e.group_id).where(e.kind == "new", e.group_id.in_(ids))).scalars())
            muted = set(db.execute(sa.select(g.id).where(g.state == "ignored", g.id.in_(ids))).scalars())
        return told | muted

    def raise_new(self, group_id: int, crash_id: str) -> bool:
        """A ``new`` event for a group made by a reprocess; False when it had one (or the group is gone)."""
        from coretriage.alerts import dedup_key

        with self.engine.begin() as db:
            at = db.execute(sa.select(crashes.c.crashed_at).where(crashes.c.id == crash_id,
                                                                  crashes.c.group_id == group_id)).scalar()
            if at is None:
                return False
            return self._insert_event(db, "new", dedup_key("new", group_id, crash_id), group_id, crash_id, at, None)

    def _group_for(self, db, signature, executable, signal, quality, seen) -> tuple[int, bool]:
        """The group of ``signature``, made when missing: (id, whether this call made it).
        Two workers may both find none and insert it (PostgreSQL, READ
        COMMITTED): the second insert waits for the first transaction and
        fails on the unique signature; its savepoint rolls back and it takes
        the group the first one committed, which made it and raised its ``new``."""
        found = db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()
        if found is not None:
            return found, False
        try:
            with _savepoint(db):
                result = db.execute(groups.insert().values(
                    signature=signature, executable=executable, signal=signal, count=0,
                    first_seen=seen, last_seen=seen, quality=quality, state="new", note=""))
            return result.inserted_primary_key[0], True
        except sa.exc.IntegrityError:
            found = db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()
            if found is None:  # not a duplicate signature after all
                raise
            return found, False

    def _touch(self, db, group_id: int, seen: float, delta: int) -> None:
        g = groups.c
        # SQLite spells two-argument min/max as min()/max(), PostgreSQL as least()/greatest()
        lo, hi = (sa.func.min, sa.func.max) if db.dialect.name == "sqlite" else (sa.func.least, sa.func.greatest)
        db.execute(groups.update().where(g.id == group_id).values(
            count=g.count + delta, first_seen=lo(g.first_seen, seen), last_seen=hi(g.last_seen, seen)))

    def update_analysis(self, crash_id: str, a: Analyzed) -> None:
        """Replace a crash's analysis (reprocess); moves it between groups."""
        with self.engine.begin() as db:
            db.execute(crashes.update().where(crashes.c.id == crash_id).values(
                analysis=json.dumps(a.analysis), signature=json.dumps(a.signature_data),
                executable=a.executable, signal=a.signal, rules_version=a.rules_version))
            c = crashes.c
            old = db.execute(sa.select(c.group_id, c.crashed_at, c.host, c.image, c.container)
                             .where(c.id == crash_id)).one()
            target, _ = self._group_for(db, a.signature, a.executable, a.signal, a.quality, old.crashed_at)
            if target != old.group_id:
                db.execute(crashes.update().where(c.id == crash_id).values(group_id=target))
                where = {name: old._mapping[name] for name in FACETS}
                _count_crash(db, old.group_id, where, old.crashed_at, -1)
                _count_crash(db, target, where, old.crashed_at, +1)
            db.execute(groups.update().where(groups.c.id == target).values(
                quality=a.quality, key_frame=a.key_frame, search_text=a.search_text[:4000]))

    def rename_group(self, group_id: int, signature: str) -> bool:
        """Give a group a new signature, keeping its id, when no other group has it."""
        with self.engine.begin() as db:
            taken = db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()
            if taken is not None and taken != group_id:
                return False
            db.execute(groups.update().where(groups.c.id == group_id).values(signature=signature))
            return True

    def crashes_mentioning(self, text: str) -> list[tuple[str, int]]:
        """(crash id, group id) of crashes whose stored analysis contains
        ``text`` (a build-id as JSON writes it): symbols arriving for a build."""
        c = crashes.c
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.engine.connect() as db:
            return [tuple(r) for r in db.execute(sa.select(c.id, c.group_id).where(
                c.analysis.like(f"%{escaped}%", escape="\\")).order_by(c.crashed_at)).all()]

    def note_renamed(self, group_id: int, old_signature: str, at: float) -> None:
        """Symbols arrived and renamed the group: keep what it was called."""
        with self.engine.begin() as db:
            db.execute(groups.update().where(groups.c.id == group_id).values(renamed_from=old_signature,
                                                                              renamed_at=at))

    def take_signature(self, group_id: int, signature: str) -> int | None:
        """Give ``group_id`` the signature another, younger group holds: that
        group's crashes move here (this id, state and note stay) and it goes.
        Returns the id of the group merged in, or None."""
        with self.engine.begin() as db:
            other = db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()
            if other is None or other == group_id:
                db.execute(groups.update().where(groups.c.id == group_id).values(signature=signature))
                return None
            db.execute(crashes.update().where(crashes.c.group_id == other).values(group_id=group_id))
            db.execute(alert_events.update().where(alert_events.c.group_id == other).values(group_id=group_id))
            db.execute(groups.delete().where(groups.c.id == other))
            db.execute(groups.update().where(groups.c.id == group_id).values(signature=signature))
            return other

    def recount(self) -> None:
        """Recompute every group's count, first/last seen, facets and days from
        its crashes; drop groups left empty."""
        with self.engine.begin() as db:
            _rebuild_counts(db)
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

    # -- users, API tokens and web sessions ---------------------------------
    def add_user(self, name: str, password_hash: str, role: str) -> bool:
        """Add a user, or set an existing one's password and role; either way
        every web session it had ends. Returns whether the user was new."""
        with self.engine.begin() as db:
            found = db.execute(sa.update(users).where(users.c.name == name)
                               .values(password_hash=password_hash, role=role)).rowcount
            if found:
                db.execute(web_sessions.delete().where(web_sessions.c.user == name))
            else:
                db.execute(users.insert().values(name=name, password_hash=password_hash, role=role,
                                                 created=time.time()))
            return not found

    def user_record(self, name: str) -> tuple[User, str] | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(users).where(users.c.name == name)).first()
        return (User(row.name, row.role), row.password_hash) if row else None

    def user_count(self) -> int:
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.count()).select_from(users)).scalar()

    def add_token(self, user: str, token_hash: str, expires: float | None = None) -> None:
        now = time.time()
        with self.engine.begin() as db:
            db.execute(tokens.insert().values(token_hash=token_hash, user=user, created=now,
                                              expires=expires if expires is not None
                                              else now + DEFAULT_TOKEN_DAYS * 86400))

    def user_for_token(self, token_hash: str, now: float | None = None) -> User | None:
        """The user of a token that exists and has not expired; notes its use
        (at most once a minute, so reads stay reads)."""
        now = time.time() if now is None else now
        t = tokens.c
        with self.engine.connect() as db:
            row = db.execute(sa.select(users.c.name, users.c.role, t.last_used).join_from(tokens, users)
                             .where(t.token_hash == token_hash, t.expires > now)).first()
        if row is None:
            return None
        if row.last_used is None or now - row.last_used > 60:
            with self.engine.begin() as db:
                db.execute(tokens.update().where(t.token_hash == token_hash).values(last_used=now))
        return User(row.name, row.role)

    def tokens(self, user: str | None = None) -> list[TokenRow]:
        t = tokens.c
        query = sa.select(t.token_hash, t.user, t.created, t.expires, t.last_used).order_by(t.created, t.token_hash)
        if user is not None:
            query = query.where(t.user == user)
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return [TokenRow(token_id(r.token_hash), r.user, r.created, r.expires, r.last_used) for r in rows]

    def revoke_token(self, short_id: str) -> TokenRow:
        """Delete the one token whose id (``TokenRow.id``) is ``short_id``."""
        short_id = short_id.strip().lower()
        if len(short_id) != 12 or any(ch not in "0123456789abcdef" for ch in short_id):
            raise NotFound(f"{short_id!r} is not a token id (12 hex digits, from `coretriage token list`)")
        found = [r for r in self.tokens() if r.id == short_id]
        if not found:
            raise NotFound(f"no token {short_id}")
        if len(found) > 1:  # 48 bits of a hash: never seen, but never guessed either
            raise NotFound(f"{len(found)} tokens share the id {short_id}; none was revoked")
        with self.engine.begin() as db:
            db.execute(tokens.delete().where(tokens.c.token_hash.startswith(short_id)))
        return found[0]

    # -- hosts that upload (coretriage.hosts) --------------------------------
    def add_host(self, name: str, token_hash: str) -> None:
        """Register a host; a name in use (revoked or not) is refused."""
        from coretriage.hosts import HostError

        with self.engine.begin() as db:
            if db.execute(sa.select(hosts.c.name).where(hosts.c.name == name)).first():
                raise HostError(f"a host named {name!r} exists already (revoked hosts keep their name)")
            db.execute(hosts.insert().values(name=name, token_hash=token_hash, created=time.time()))

    def host_for_token(self, token_hash: str) -> str | None:
        """The name of the host whose token this is, unless it was revoked."""
        h = hosts.c
        with self.engine.connect() as db:
            return db.execute(sa.select(h.name).where(h.token_hash == token_hash, h.revoked_at.is_(None))).scalar()

    def revoke_host(self, name: str) -> bool:
        with self.engine.begin() as db:
            return bool(db.execute(hosts.update().where(hosts.c.name == name, hosts.c.revoked_at.is_(None))
                                   .values(revoked_at=time.time())).rowcount)

    def host_heartbeat(self, name: str, report: dict, now: float | None = None) -> None:
        now = time.time() if now is None else now
        values = {"last_heartbeat": now, "report": json.dumps(report, sort_keys=True)}
        with self.engine.begin() as db:
            db.execute(hosts.update().where(hosts.c.name == name).values(**values))
            crashed = report.get("last_crash_at")
            if isinstance(crashed, (int, float)):
                self._host_crash(db, name, float(crashed))

    def host_crashed(self, name: str, at: float) -> None:
        with self.engine.begin() as db:
            self._host_crash(db, name, at)

    @staticmethod
    def _host_crash(db, name: str, at: float) -> None:
        h = hosts.c
        db.execute(hosts.update().where(h.name == name, sa.or_(h.last_crash_at.is_(None), h.last_crash_at < at))
                   .values(last_crash_at=at))

    def hosts(self) -> list:
        from coretriage.hosts import HostRow

        with self.engine.connect() as db:
            rows = db.execute(sa.select(hosts).order_by(hosts.c.name)).all()
        out = []
        for r in rows:
            try:
                report = json.loads(r.report) if r.report else None
            except ValueError:
                report = None
            out.append(HostRow(name=r.name, created=r.created, revoked_at=r.revoked_at,
                               last_heartbeat=r.last_heartbeat, report=report if isinstance(report, dict) else None,
                               last_crash_at=r.last_crash_at))
        return out

    def add_session(self, id_hash: str, user: str, csrf: str, now: float) -> None:
        with self.engine.begin() as db:
            db.execute(web_sessions.insert().values(id_hash=id_hash, user=user, csrf=csrf, created=now,
                                                    last_seen=now, data="{}"))

    def web_session(self, id_hash: str) -> SessionRow | None:
        """A session and its user's role, in one statement: every page asks."""
        s = web_sessions.c
        with self._reads.connect() as db:
            row = db.execute(sa.select(s.user, s.csrf, s.created, s.last_seen, s.data, users.c.role)
                             .select_from(web_sessions.outerjoin(users, users.c.name == s.user))
                             .where(s.id_hash == id_hash)).first()
        if row is None:
            return None
        data = json.loads(row.data) if row.data and row.data != "{}" else {}
        return SessionRow(row.user, row.csrf, row.created, row.last_seen, data, row.role)

    def touch_session(self, id_hash: str, now: float, data: dict | None = None) -> None:
        values = {"last_seen": now}
        if data is not None:
            values["data"] = json.dumps(data)
        with self.engine.begin() as db:
            db.execute(web_sessions.update().where(web_sessions.c.id_hash == id_hash).values(**values))

    def end_session(self, id_hash: str) -> None:
        with self.engine.begin() as db:
            db.execute(web_sessions.delete().where(web_sessions.c.id_hash == id_hash))

    def end_sessions(self, user: str) -> int:
        """End every web session of ``user``; returns how many there were."""
        with self.engine.begin() as db:
            return db.execute(web_sessions.delete().where(web_sessions.c.user == user)).rowcount

    def end_stale_sessions(self, idle_since: float, created_before: float) -> None:
        """Forget sessions idle since ``idle_since`` or made before ``created_before``."""
        s = web_sessions.c
        with self.engine.begin() as db:
            db.execute(web_sessions.delete().where(sa.or_(s.last_seen < idle_since, s.created < created_before)))

    def login_failures(self, keys: list[str]) -> dict[str, tuple[int, float]]:
        """key -> (failures, time of the first) for the keys that have any."""
        f = login_failures.c
        with self.engine.connect() as db:
            rows = db.execute(sa.select(f.key, f.count, f.first).where(f.key.in_(keys))).all()
        return {r.key: (r.count, r.first) for r in rows}

    def add_login_failure(self, keys: list[str], now: float, window: float) -> None:
        """Count one failed login against each key; a key whose window has
        passed starts again. Windows long passed are forgotten."""
        f = login_failures.c
        for attempt in (1, 2):  # a concurrent first failure of the same key: count again
            try:
                with self.engine.begin() as db:
                    db.execute(login_failures.delete().where(f.first < now - window))
                    for key in sorted(keys):  # one order: no deadlock between two requests
                        done = db.execute(login_failures.update().where(f.key == key)
                                          .values(count=f.count + 1)).rowcount
                        if not done:
                            db.execute(login_failures.insert().values(key=key, count=1, first=now))
                return
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise

    def clear_login_failures(self, key: str) -> None:
        with self.engine.begin() as db:
            db.execute(login_failures.delete().where(login_failures.c.key == key))

    # -- reading ---------------------------------------------------------
    def find_groups(self, q: GroupQuery) -> tuple[list[GroupRow], int]:
        """One page of groups matching ``q``, and how many match in all (up
        to ``q.count_cap``: ``q.count_capped``)."""
        params = {"limit": q.limit, "offset": q.offset, "since": q.since, "until": q.until,
                  "count_limit": q.count_cap}
        params.update((name, getattr(q, name)) for name in _GROUP_FILTERS if getattr(q, name))
        words = q.search.split()[:8] if q.search else []
        for i, word in enumerate(words):
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params[f"word{i}"] = f"%{escaped}%"
        shape = (tuple(n for n in _GROUP_FILTERS if n in params), q.since is not None, q.until is not None,
                 len(words), q.sort if q.sort in SORTS else "last_seen", q.count_cap is not None)
        page, count, few_page = self._built(("find_groups", shape), lambda: _group_queries(*shape))
        with self._reads.connect() as db:
            if words and q.count_cap is not None:  # a capped count is cheap, and says which page to read
                total = db.execute(count, params).scalar()
                rows = db.execute(page if q.count_capped(total) else few_page, params).all()
                return [_group(r) for r in rows], total
            rows = db.execute(page, params).all()
            if rows and len(rows) < q.limit:  # the last page: the total is known without counting
                total = q.offset + len(rows)
            else:
                total = db.execute(count, params).scalar()
        return [_group(r) for r in rows], total

    def _built(self, key, build):
        """A page's statement, built once (with bind parameters) and kept:
        building a select with subqueries costs more Python than running it."""
        key = (self.engine.dialect.name, *key)
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._statements[key] = build()
        return stmt

    def facets(self, group_ids: list[int], kinds: tuple[str, ...] | None = None,
               top: int | None = None) -> dict[int, dict[str, list[tuple[str, int]]]]:
        """Hosts, images and containers each group's crashes came from, most
        first: only the facets in ``kinds`` (all when None), and only the
        ``top`` most of each (the group list shows three of a loud bug's
        hundreds)."""
        out: dict[int, dict[str, list[tuple[str, int]]]] = {i: {} for i in group_ids}
        if not group_ids:
            return out

        def build():
            f = group_facets.c
            where = [_among(self.engine, f.group_id, "ids", sa.Integer), f.count > 0]
            if kinds is not None:
                where.append(_among(self.engine, f.facet, "kinds", sa.String))
            if top is None:
                return sa.select(f.group_id, f.facet, f.value, f.count).where(*where).order_by(
                    f.group_id, f.facet, f.count.desc(), f.value)
            rank = sa.func.row_number().over(partition_by=(f.group_id, f.facet),
                                             order_by=(f.count.desc(), f.value)).label("rank")
            r = sa.select(f.group_id, f.facet, f.value, f.count, rank).where(*where).subquery().c
            return (sa.select(r.group_id, r.facet, r.value, r.count).where(r.rank <= sa.bindparam("top"))
                    .order_by(r.group_id, r.facet, r.count.desc(), r.value))

        stmt = self._built(("facets", kinds is None, top is None), build)
        params = {"ids": list(group_ids), "kinds": list(kinds or ()), "top": top}
        with self._reads.connect() as db:
            rows = db.execute(stmt, params).all()
        for gid, facet, value, count in rows:
            out[gid].setdefault(facet, []).append((value, count))
        return out

    def daily_counts(self, group_ids: list[int], days: int = 30, now: float | None = None) -> dict[int, list[int]]:
        """Crashes per day over the last ``days`` days, oldest first."""
        now = now or time.time()
        start_day = int(now // 86400) - days + 1
        out = {i: [0] * days for i in group_ids}
        if not group_ids:
            return out

        def build():
            d = group_days.c
            return sa.select(d.group_id, d.day, d.count).where(
                _among(self.engine, d.group_id, "ids", sa.Integer), d.day >= sa.bindparam("start"),
                d.day < sa.bindparam("end"))

        with self._reads.connect() as db:
            rows = db.execute(self._built(("daily",), build),
                              {"ids": list(group_ids), "start": start_day, "end": start_day + days}).all()
        for gid, day, count in rows:
            out[gid][day - start_day] = count
        return out

    def distinct(self, column: str, limit: int = 200) -> list[str]:
        """Values seen for a filter (executable, signal, host, image, container),
        in order. A loose index scan: each next value is one probe of the
        column's index (the smallest greater than the last), so 50 values
        among a million rows cost 50 probes, not a DISTINCT over every row."""
        return self.distinct_values((column,), limit)[column]

    def distinct_values(self, columns: tuple[str, ...], limit: int = 200) -> dict[str, list[str]]:
        """``distinct`` of several columns in one statement (the group list's
        choices of executable and signal)."""

        def build():
            parts = []
            for i, column in enumerate(columns):
                table = groups if column in ("executable", "signal") else crashes
                col = table.c[column]
                found = sa.select(sa.func.min(col).label("v")).cte(f"found{i}", recursive=True)
                after = sa.select(sa.func.min(col)).where(col > found.c.v).scalar_subquery()
                found = found.union_all(sa.select(after).select_from(found).where(found.c.v.is_not(None)))
                first = (sa.select(sa.literal(i).label("k"), found.c.v).where(found.c.v.is_not(None))
                         .limit(sa.bindparam("limit", type_=sa.Integer)).subquery(f"first{i}"))
                parts.append(sa.select(first.c.k, first.c.v))
            union = (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery("choices")
            return sa.select(union.c.k, union.c.v).order_by(union.c.k, union.c.v)

        out: dict[str, list[str]] = {c: [] for c in columns}
        with self._reads.connect() as db:
            for k, v in db.execute(self._built(("distinct", tuple(columns)), build), {"limit": limit}):
                out[columns[k]].append(v)
        return out

    def groups(self, limit: int = 100, offset: int = 0) -> list[GroupRow]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(groups).order_by(groups.c.last_seen.desc(), groups.c.id.desc())
                              .limit(limit).offset(offset)).all()
        return [_group(r) for r in rows]

    def group(self, group_id: int) -> GroupRow:
        with self._reads.connect() as db:
            row = db.execute(sa.select(groups).where(groups.c.id == group_id)).first()
        if row is None:
            raise NotFound(f"no group g{group_id}")
        return _group(row)

    def crash(self, crash_id: str) -> CrashRow:
        with self._reads.connect() as db:
            row = db.execute(sa.select(crashes).where(crashes.c.id == crash_id)).first()
        if row is None:
            raise NotFound(f"no crash {crash_id}")
        return _crash(row)

    def crash_of_bundle(self, bundle_id: str) -> CrashRow | None:
        """The crash stored from spool bundle ``bundle_id``, if any."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(crashes).where(crashes.c.bundle_id == bundle_id)).first()
        return _crash(row) if row is not None else None

    # -- bundle claims (coretriage.claims) ---------------------------------
    def claim_bundle(self, bundle_id: str, holder: str, lease: float, now: float | None = None) -> bool:
        """Hold ``bundle_id`` for ``lease`` seconds: True when it was free,
        its claim ran out, or ``holder`` already has it. A compare-and-set,
        so two workers never both get it."""
        now = time.time() if now is None else now
        b = bundle_claims.c
        with self.engine.begin() as db:
            taken = db.execute(bundle_claims.update().where(
                b.bundle_id == bundle_id, sa.or_(b.expires < now, b.holder == holder))
                .values(holder=holder, expires=now + lease)).rowcount
            if taken:
                return True
            try:
                with _savepoint(db):
                    db.execute(bundle_claims.insert().values(bundle_id=bundle_id, holder=holder,
                                                             expires=now + lease))
                return True
            except sa.exc.IntegrityError:  # someone else holds it, and not for long enough to take over
                return False

    def renew_claim(self, bundle_id: str, holder: str, lease: float) -> bool:
        """Extend ``holder``'s claim; False when it lost it."""
        b = bundle_claims.c
        with self.engine.begin() as db:
            return bool(db.execute(bundle_claims.update().where(b.bundle_id == bundle_id, b.holder == holder)
                                   .values(expires=time.time() + lease)).rowcount)

    def release_claim(self, bundle_id: str, holder: str) -> None:
        b = bundle_claims.c
        with self.engine.begin() as db:
            db.execute(bundle_claims.delete().where(b.bundle_id == bundle_id, b.holder == holder))

    def crashes_of(self, group_id: int, limit: int = 1000) -> list[CrashRow]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(crashes).where(crashes.c.group_id == group_id)
                              .order_by(crashes.c.crashed_at.desc()).limit(limit)).all()
        return [_crash(r) for r in rows]

    def cores_beyond(self, keep: int) -> list[tuple[str, str]]:
        """(crash id, core file) of stored cores older than each group's
        ``keep`` most recent ones."""
        c = crashes.c
        rank = sa.func.row_number().over(partition_by=c.group_id,
                                         order_by=(c.crashed_at.desc(), c.id.desc())).label("rank")
        inner = sa.select(c.id, c.core_file, rank).where(c.core_file.is_not(None)).subquery()
        with self.engine.connect() as db:
            return [tuple(r) for r in db.execute(sa.select(inner.c.id, inner.c.core_file)
                                                 .where(inner.c.rank > keep)).all()]

    def forget_core(self, crash_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(crashes.update().where(crashes.c.id == crash_id).values(core_file=None))

    def relocate_files(self, crash_id: str, exe_file: str | None, sysroot: str | None) -> None:
        """Where this data dir holds a crash's executable and sysroot (a
        worker on another machine stored its own paths; ``coretriage.remote``)."""
        with self.engine.begin() as db:
            db.execute(crashes.update().where(crashes.c.id == crash_id).values(exe_file=exe_file, sysroot=sysroot))

    def crash_summaries(self, group_id: int, limit: int = 200, architecture: bool = False) -> list[dict]:
        """The group page's crash list, without decoding every analysis;
        with ``architecture`` each also gets the architecture its analysis
        records (None before it was recorded), read from the stored JSON
        text without decoding it: the key is written once, at the top
        level, as the last field (json.dumps escapes any quote in a value),
        so only each text's last 200 bytes are sent (``_tail``), and the
        whole text only of a crash whose tail lacks the key."""
        c = crashes.c
        columns = [c.id, c.crashed_at, c.host, c.container, c.image]
        if architecture:
            columns.append(_tail(self.engine.dialect.name, c.analysis, 200).label("tail"))
        with self._reads.connect() as db:
            rows = [dict(r._mapping) for r in db.execute(
                sa.select(*columns).where(c.group_id == group_id).order_by(c.crashed_at.desc()).limit(limit)).all()]
            if not architecture:
                return rows
            missed = []
            for r in rows:
                tail = r.pop("tail") or ""
                if isinstance(tail, bytes):  # cut at a byte: a character split there is no part of the key
                    tail = tail.decode("utf-8", "replace")
                found = _ARCH_KEY.search(tail)
                r["architecture"] = found.group(1) if found else None
                if found is None:
                    missed.append(r)
            if missed:  # the key is elsewhere in the text, or not in it
                texts = dict(db.execute(sa.select(c.id, c.analysis).where(c.id.in_([r["id"] for r in missed]))).all())
                for r in missed:
                    found = _ARCH_KEY.search(texts.get(r["id"]) or "")
                    r["architecture"] = found.group(1) if found else None
        return rows

    def crash_ids(self) -> list[tuple[str, int]]:
        with self.engine.connect() as db:
            return [tuple(r) for r in db.execute(sa.select(crashes.c.id, crashes.c.group_id)
                                                 .order_by(crashes.c.crashed_at)).all()]

    # -- alert channels and the outbox (coretriage.notify) --------------------
    def add_channel(self, channel) -> bool:
        """Add or replace a channel (coretriage.alerts.Channel); whether it was new."""
        values = dict(kind=channel.kind, target=channel.target, secret=channel.secret,
                      events=",".join(channel.events), executable=channel.executable, host=channel.host,
                      image=channel.image, quiet=channel.quiet, digest=channel.digest)
        with self.engine.begin() as db:
            found = db.execute(alert_channels.update().where(alert_channels.c.name == channel.name)
                               .values(**values)).rowcount
            if not found:
                db.execute(alert_channels.insert().values(name=channel.name, created=time.time(), **values))
            return not found

    def channels(self) -> list:
        from coretriage.alerts import Channel

        with self.engine.connect() as db:
            rows = db.execute(sa.select(alert_channels).order_by(alert_channels.c.name)).all()
        return [Channel(name=r.name, kind=r.kind, target=r.target, secret=r.secret,
                        events=tuple(r.events.split(",")), executable=r.executable, host=r.host,
                        image=r.image, quiet=r.quiet, digest=r.digest) for r in rows]

    def remove_channel(self, name: str) -> bool:
        """Remove a channel, and the events it had collected for a digest not cut yet."""
        i = alert_digest_items.c
        with self.engine.begin() as db:
            db.execute(alert_digest_items.delete().where(i.channel == name, i.digest_id.is_(None)))
            return bool(db.execute(alert_channels.delete().where(alert_channels.c.name == name)).rowcount)

    def alert_events(self, kind: str | None = None) -> list[dict]:
        q = sa.select(alert_events).order_by(alert_events.c.id)
        if kind:
            q = q.where(alert_events.c.kind == kind)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(q).all()]

    def recent_alert_events(self, limit: int = 100) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(
                sa.select(alert_events).order_by(alert_events.c.id.desc()).limit(limit)).all()]

    def claim_events(self, now: float, lease: float, limit: int = 20) -> list[dict]:
        """Due outbox events, each held for ``lease`` seconds by this sender:
        a compare-and-set on the lease, so two senders never hold one event."""
        return self._claim_due(alert_events, now, lease, limit)

    def delivered_to(self, event_id: int) -> set[str]:
        with self.engine.connect() as db:
            return set(db.execute(sa.select(alert_deliveries.c.channel)
                                  .where(alert_deliveries.c.event_id == event_id)).scalars())

    def last_sent(self, channel: str, group_id: int) -> float | None:
        """When ``channel`` last got an alert of the group (not counting skipped ones)."""
        d, e = alert_deliveries.c, alert_events.c
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.max(d.sent)).select_from(
                alert_deliveries.join(alert_events, e.id == d.event_id)).where(
                d.channel == channel, e.group_id == group_id, d.skipped.is_(False))).scalar()

    def mark_delivered(self, event_id: int, channel: str, skipped: bool = False) -> None:
        with self.engine.begin() as db:
            try:
                with _savepoint(db):
                    db.execute(alert_deliveries.insert().values(event_id=event_id, channel=channel,
                                                                sent=time.time(), skipped=skipped))
            except sa.exc.IntegrityError:
                pass

    def finish_event(self, event_id: int, *, done: bool, next_try: float | None = None,
                     error: str | None = None) -> None:
        self._finish(alert_events, event_id, done, next_try, error)

    # -- digests (coretriage.notify.deliver_digests) ---------------------------
    def queue_for_digest(self, event_id: int, channel: str, now: float) -> None:
        """Collect an event for the channel's next digest and count it as
        delivered to the channel: both or neither, and a repeat is a no-op."""
        with self.engine.begin() as db:
            for table, values in ((alert_digest_items, dict(channel=channel, event_id=event_id, queued=now)),
                                  (alert_deliveries, dict(event_id=event_id, channel=channel, sent=now,
                                                          skipped=False))):
                try:
                    with _savepoint(db):
                        db.execute(table.insert().values(**values))
                except sa.exc.IntegrityError:
                    pass

    def cut_digest(self, channel: str, period: float, now: float) -> int | None:
        """A digest of the channel's collected events, once the oldest has
        waited ``period`` seconds; None when none is due. Each event goes to
        one digest: two senders cutting at once both claim the open items
        with one UPDATE, and the one that got none drops its empty digest."""
        i, d = alert_digest_items.c, alert_digests.c
        with self.engine.begin() as db:
            oldest = db.execute(sa.select(sa.func.min(i.queued)).where(
                i.channel == channel, i.digest_id.is_(None))).scalar()
            if oldest is None or oldest > now - period:
                return None
            digest_id = db.execute(alert_digests.insert().values(
                channel=channel, created=now, attempts=0, next_try=now)).inserted_primary_key[0]
            taken = db.execute(alert_digest_items.update().where(
                i.channel == channel, i.digest_id.is_(None), i.queued <= now).values(digest_id=digest_id)).rowcount
            if not taken:
                db.execute(alert_digests.delete().where(d.id == digest_id))
                return None
            return digest_id

    def claim_digests(self, now: float, lease: float, limit: int = 20) -> list[dict]:
        """Due digests, each leased to this sender (as ``claim_events``)."""
        return self._claim_due(alert_digests, now, lease, limit)

    def _claim_due(self, table: sa.Table, now: float, lease: float, limit: int) -> list[dict]:
        """Rows of an outbox (events, digests) that are due, each leased to
        this sender by a compare-and-set on its lease."""
        t = table.c
        due = (t.done.is_(None), t.next_try <= now)
        with self.engine.begin() as db:
            rows = db.execute(sa.select(table).where(*due, sa.or_(t.lease.is_(None), t.lease < now))
                              .order_by(t.id).limit(limit)).all()
            held = []
            for r in rows:
                # Still due, too: another sender may have taken, finished and
                # released the row (lease back to NULL) since the SELECT.
                if db.execute(table.update().where(t.id == r.id, *due,
                                                   sa.or_(t.lease.is_(None), t.lease == r.lease))
                              .values(lease=now + lease)).rowcount:
                    held.append(dict(r._mapping))
            return held

    def digest_events(self, digest_id: int) -> list[dict]:
        """The events a digest carries, oldest first."""
        i, e = alert_digest_items.c, alert_events.c
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(
                sa.select(alert_events).join(alert_digest_items, i.event_id == e.id)
                .where(i.digest_id == digest_id).order_by(e.id)).all()]

    def digests(self, channel: str | None = None) -> list[dict]:
        d = alert_digests.c
        q = sa.select(alert_digests).order_by(d.id)
        if channel:
            q = q.where(d.channel == channel)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(q).all()]

    def recent_digests(self, limit: int = 20) -> list[dict]:
        """The latest digests, each with how many events it carried."""
        d, i = alert_digests.c, alert_digest_items.c
        carried = sa.select(sa.func.count()).where(i.digest_id == d.id).scalar_subquery().label("events")
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(
                sa.select(alert_digests, carried).order_by(d.id.desc()).limit(limit)).all()]

    def finish_digest(self, digest_id: int, *, done: bool, next_try: float | None = None,
                      error: str | None = None) -> None:
        self._finish(alert_digests, digest_id, done, next_try, error)

    def _finish(self, table: sa.Table, row_id: int, done: bool, next_try: float | None, error: str | None) -> None:
        """An outbox row (event, digest) after one try: done, or due again at ``next_try``; its lease ends."""
        t = table.c
        values = {"lease": None, "error": error, "attempts": t.attempts + 1}
        if done:
            values["done"] = time.time()
        else:
            values["next_try"] = next_try
        with self.engine.begin() as db:
            db.execute(table.update().where(t.id == row_id).values(**values))

    # -- metrics -----------------------------------------------------------
    def crash_totals(self) -> list[tuple]:
        """(executable, host, signal, group state, count): /metrics' crash counter."""
        c, g = crashes.c, groups.c
        with self.engine.connect() as db:
            return [tuple(r) for r in db.execute(
                sa.select(c.executable, c.host, c.signal, g.state, sa.func.count())
                .select_from(crashes.join(groups, g.id == c.group_id))
                .group_by(c.executable, c.host, c.signal, g.state)).all()]

    def alert_backlog(self) -> tuple[int, int]:
        """(events not sent yet, events given up with an error)."""
        e = alert_events.c
        with self.engine.connect() as db:
            pending = db.execute(sa.select(sa.func.count()).where(e.done.is_(None))).scalar()
            failed = db.execute(sa.select(sa.func.count()).where(e.done.is_not(None), e.error.is_not(None),
                                                                 e.error != "group ignored")).scalar()
        return pending, failed

    def analysis_histogram(self, bounds: tuple[float, ...]) -> tuple[list[int], int, float]:
        """(cumulative count at or under each bound, count, sum of seconds) of
        the stored crashes' analysis times: one query, however many crashes."""
        c = crashes.c
        timed = c.analysis_seconds.is_not(None)
        columns = [sa.func.sum(sa.case((sa.and_(timed, c.analysis_seconds <= b), 1), else_=0)) for b in bounds]
        columns += [sa.func.sum(sa.case((timed, 1), else_=0)), sa.func.sum(c.analysis_seconds)]
        with self.engine.connect() as db:
            row = db.execute(sa.select(*columns)).one()
        return [int(v or 0) for v in row[:len(bounds)]], int(row[-2] or 0), float(row[-1] or 0.0)

    def failures_by_reason(self) -> dict[str, int]:
        """Analyses that gave no backtrace, by the problem code that says why."""
        c = crashes.c
        with self.engine.connect() as db:
            return dict(db.execute(sa.select(c.failure, sa.func.count()).where(c.failure.is_not(None))
                                   .group_by(c.failure)).all())

    def drops_by_reason(self) -> dict[str, int]:
        """Crashes stored without their full core, by coretriage.drops reason."""
        c = crashes.c
        with self.engine.connect() as db:
            return dict(db.execute(sa.select(c.dropped, sa.func.count()).where(c.dropped.is_not(None))
                                   .group_by(c.dropped)).all())

    def groups_by_state(self) -> dict[str, int]:
        with self.engine.connect() as db:
            return dict(db.execute(sa.select(groups.c.state, sa.func.count()).group_by(groups.c.state)).all())


def _count_crash(db, group_id: int, where: dict, crashed_at: float, delta: int) -> None:
    """Count a crash in (+1) or out of (-1) its group's facets and day, in
    the transaction that stores or moves it."""
    rows = [(group_facets, {"group_id": group_id, "facet": name, "value": value})
            for name, value in where.items() if value is not None]
    rows.append((group_days, {"group_id": group_id, "day": int(crashed_at // 86400)}))
    for table, key in rows:
        if delta > 0:
            _upsert_add(db, table, key, delta)
        else:
            cond = [table.c[k] == v for k, v in key.items()]
            db.execute(table.update().where(*cond).values(count=table.c.count + delta))
            db.execute(table.delete().where(*cond, table.c.count <= 0))


def _upsert_add(db, table, key: dict, delta: int) -> None:
    if db.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif db.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # any other backend: update, else insert (the group's row lock orders writers)
        cond = [table.c[k] == v for k, v in key.items()]
        if not db.execute(table.update().where(*cond).values(count=table.c.count + delta)).rowcount:
            db.execute(table.insert().values(**key, count=delta))
        return
    stmt = insert(table).values(**key, count=delta)
    db.execute(stmt.on_conflict_do_update(index_elements=list(key), set_={"count": table.c.count + delta}))


def _rebuild_counts(db) -> None:
    """group_facets and group_days again from every crash (recount)."""
    c = crashes.c
    db.execute(group_facets.delete())
    db.execute(group_days.delete())
    for name in FACETS:
        col = c[name]
        db.execute(group_facets.insert().from_select(
            ["group_id", "facet", "value", "count"],
            sa.select(c.group_id, sa.literal(name, sa.String(16)), col, sa.func.count())
            .where(col.is_not(None)).group_by(c.group_id, col)))
    day = sa.cast(sa.func.floor(c.crashed_at / 86400), sa.Integer)
    db.execute(group_days.insert().from_select(
        ["group_id", "day", "count"], sa.select(c.group_id, day, sa.func.count()).group_by(c.group_id, day)))


_ARCH_KEY = re.compile(r'"architecture": "([\w.-]{1,32})"')


def _tail(dialect: str, column, n: int):
    """The last ``n`` bytes (or characters) of a text column, cut in the
    database. PostgreSQL's right() counts a long UTF-8 text's characters
    from its start, which costs more than sending the whole text; its bytes
    (textsend) cut at octet_length, which the stored header knows, do not."""
    if dialect == "postgresql":
        return sa.func.substr(sa.func.textsend(column), sa.func.octet_length(column) - (n - 1))
    if dialect == "sqlite":
        return sa.func.substr(column, -n)
    return column  # elsewhere the whole text: the key is found all the same


def _among(engine, column, name: str, item_type):
    """``column IN`` the list given as bind parameter ``name``; on
    PostgreSQL ``= ANY(array)``, one parameter: the same statement text for
    any number of values, which psycopg then parses and prepares once."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(item_type)))
    return column.in_(sa.bindparam(name, expanding=True))


def _write_lock(db: sa.Connection) -> None:
    """On SQLite, begin the caller's transaction now with the database's write
    lock (waiting for another process's writer). pysqlite begins a transaction
    only before its first INSERT, UPDATE or DELETE: what is read before then
    is read outside it, and another process may change it before this one
    writes. A write that changes nothing does it. PostgreSQL needs nothing:
    it locks the rows read FOR UPDATE."""
    if db.dialect.name == "sqlite":
        db.exec_driver_sql("UPDATE groups SET id = id WHERE 0")


def _savepoint(db: sa.Connection):
    """A savepoint inside the caller's transaction. On SQLite a SAVEPOINT
    issued before pysqlite began the transaction would begin one of its own,
    and its release would commit it at once (a group made visible before its
    crash): ``_write_lock`` begins the real one first."""
    if not db.in_nested_transaction():
        _write_lock(db)
    return db.begin_nested()


def _sqlite_pragmas(conn, _record) -> None:
    # WAL lets the web UI read while the collector writes
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
