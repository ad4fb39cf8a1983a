"""Schema migrations on a real PostgreSQL: a database made by the store
before migrations is left alone by opening (it is shared by many hosts) and
upgraded in place by ``coretriage db upgrade``; an empty one is made at head
once, however many hosts open it at the same time."""

import subprocess
import sys

import pytest

from coretriage import migrations
from coretriage.store import SchemaError, Store, metadata
from pgserver import create_database, postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_database_made_before_migrations_is_upgraded_by_db_upgrade(pg_url, tmp_path, make_legacy_db,
                                                                    table_rows, schema_diff, check_upgraded):
    url = create_database(pg_url, "legacy")
    make_legacy_db(url)
    before = table_rows(url)
    with pytest.raises(SchemaError, match="run `coretriage db upgrade`"):
        Store(url)
    assert table_rows(url) == before and migrations.current(url) == migrations.UNVERSIONED

    cli = [sys.executable, "-m", "coretriage.cli", "--data-dir", str(tmp_path / "data")]
    env = {"PATH": "/usr/bin:/bin", "CORETRIAGE_DATABASE_URL": url}
    refused = subprocess.run([*cli, "list"], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "coretriage db upgrade" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    out = subprocess.run([*cli, "db", "upgrade"], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == f"upgraded from unversioned to {migrations.HEAD}"

    assert migrations.current(url) == migrations.HEAD
    assert schema_diff(url, metadata) == []
    check_upgraded(url, before, table_rows(url))


def test_empty_database_made_once_by_concurrent_openers(pg_url, schema_diff, open_concurrently):
    url = create_database(pg_url, "fresh")
    open_concurrently(url)
    assert migrations.current(url) == migrations.HEAD
    assert schema_diff(url, metadata) == []


def test_first_revision_is_the_schema_before_migrations(pg_url, legacy_store, schema_diff):
    url = create_database(pg_url, "first")
    assert migrations.upgrade(url, "0001") == (None, "0001")
    assert schema_diff(url, legacy_store.metadata) == []
    with pytest.raises(SchemaError, match=f"at 0001, this coretriage needs {migrations.HEAD}"):
        Store(url)
    assert migrations.upgrade(url) == ("0001", migrations.HEAD)
    Store(url).close()
