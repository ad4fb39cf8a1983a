"""A throwaway PostgreSQL server for the store tests: initdb as the postgres
user in a temporary directory, unix socket only, always stopped."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import tempfile
import time
from pathlib import Path

from servicekit import stop

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextlib.contextmanager
def postgres_server():
    """Yield a SQLAlchemy URL for an empty database on a fresh server."""
    if not (PG_BIN / "postgres").exists():
        raise RuntimeError(f"PostgreSQL 15 is not installed in {PG_BIN} (make test installs it)")
    user = pwd.getpwnam("postgres")
    run_as = {"user": user.pw_uid, "group": user.pw_gid, "env": {"PATH": f"{PG_BIN}:/usr/bin:/bin", "LC_ALL": "C"}}
    with tempfile.TemporaryDirectory(prefix="ctpg-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        os.chown(root, user.pw_uid, user.pw_gid)
        data = root / "data"
        subprocess.run([PG_BIN / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=120, **run_as)
        server = subprocess.Popen([PG_BIN / "postgres", "-D", data, "-k", root, "-c", "listen_addresses=",
                                   "-c", "fsync=off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  **run_as)
        try:
            deadline = time.monotonic() + 60
            while not (root / ".s.PGSQL.5432").exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start")
                time.sleep(0.05)
            subprocess.run([PG_BIN / "createdb", "-h", root, "-U", "postgres", "coretriage"],
                           check=True, capture_output=True, timeout=60, **run_as)
            yield f"postgresql+psycopg://postgres@/coretriage?host={root}"
        finally:
            stop(server, 30)


def create_database(url: str, name: str) -> str:
    """Another empty database on the server of ``url``; returns its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses transactions
    try:
        with engine.connect() as db:
            db.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)
