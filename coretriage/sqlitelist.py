"""``coretriage list`` on SQLite with the standard library's sqlite3.

The group list is the first thing an on-call engineer types, and importing
SQLAlchemy alone takes several times Python's own start-up. For a SQLite
database already at the schema's head, this reads the groups directly and
read-only. Anything else (another backend, no database yet, one to upgrade,
a locked or odd file) answers None and the caller opens the store, which
knows what to do. The query is the store's ``groups()``; a test checks that
both give the same rows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

from coretriage.records import GroupRow

PREFIX = "sqlite:///"
COLUMNS = ", ".join(f.name for f in fields(GroupRow))


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL (no query string), else None."""
    if not url.startswith(PREFIX) or "?" in url:
        return None
    path = Path(url[len(PREFIX):])
    return path if path.is_absolute() else None


def recent_groups(url: str, head: str, limit: int) -> list[GroupRow] | None:
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None
    try:
        db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        found = db.execute("SELECT version_num FROM alembic_version").fetchone()
        if found is None or found[0] != head:
            return None
        rows = db.execute(f"SELECT {COLUMNS} FROM groups ORDER BY last_seen DESC, id DESC LIMIT ?",
                          (limit,)).fetchall()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return [GroupRow(*row) for row in rows]
