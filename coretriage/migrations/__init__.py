"""Schema migrations: Alembic, configured here in code (no alembic.ini).

``versions/`` holds the revisions; ``REVISIONS`` names them in order so that
opening a store can compare a database's revision with ``HEAD`` without
importing Alembic (tests check the list against Alembic's own). Alembic is
imported only by ``upgrade``, i.e. when a database actually changes.

``upgrade`` runs in one transaction under a lock, so two processes starting
on the same new database do not both build it: PostgreSQL takes an advisory
lock; SQLite begins with ``BEGIN IMMEDIATE`` (its DDL is transactional too,
once pysqlite is kept from managing transactions itself).

A database made before migrations (tables, no ``alembic_version``) is
upgraded in place: revision 0001 creates only what is missing, so on such a
database it adds nothing but the indexes older code added lazily.

New revision: copy the latest file in ``versions/``, set ``revision`` and
``down_revision``, and append it to ``REVISIONS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # SQLAlchemy is imported where it is used: `coretriage list` reads HEAD without it
    import sqlalchemy as sa

REVISIONS = ("0001", "0002", "0003", "0004", "0008", "0005", "0006", "0009", "0010", "0007")
HEAD = REVISIONS[-1]
UNVERSIONED = "unversioned"  # tables made before migrations, no alembic_version

_LOCK_KEY = 0x636f726574726961  # "coretria": the PostgreSQL advisory lock of schema changes


def revision_of(db: sa.Connection) -> str | None:
    """The database's schema revision: None when it is empty, UNVERSIONED
    when it was made before migrations."""
    import sqlalchemy as sa

    inspector = sa.inspect(db)
    if inspector.has_table("alembic_version"):
        found = db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        if found is not None:
            return found
    return UNVERSIONED if inspector.has_table("groups") else None


def current(url: str | sa.URL) -> str | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return revision_of(db)
    finally:
        engine.dispose()


def upgrade(url: str | sa.URL, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to ``revision``. Returns its revision before and after."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    engine = _engine(url)
    try:
        with engine.begin() as db:
            if db.dialect.name == "postgresql":
                db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            before = revision_of(db)
            config = Config()
            config.set_main_option("script_location", str(Path(__file__).parent))
            config.attributes["connection"] = db
            command.upgrade(config, revision)
            return before, revision_of(db)
    finally:
        engine.dispose()


def _engine(url) -> sa.Engine:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def _sqlite_connect(dbapi_conn, _record) -> None:
    # SQLAlchemy's recipe for transactional DDL on pysqlite: no implicit
    # transactions, the "begin" listener emits BEGIN IMMEDIATE (the write lock)
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout = 30000")
    dbapi_conn.execute("PRAGMA journal_mode=WAL")  # persistent; what Store uses too
