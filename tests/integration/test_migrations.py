"""Schema migrations (coretriage/migrations) on SQLite: databases made by the
store before migrations are upgraded in place, fresh ones are made at head."""

import subprocess
import sys

import pytest
import sqlalchemy as sa

from coretriage import migrations
from coretriage.store import SchemaError, Store, metadata


def test_database_made_before_migrations_is_upgraded_in_place(tmp_path, make_legacy_db, table_rows, schema_diff, check_upgraded):
    url = f"sqlite:///{tmp_path}/crashes.db"
    make_legacy_db(url)
    before = table_rows(url)
    assert migrations.current(url) == migrations.UNVERSIONED
    Store(url).close()  # SQLite: opening upgrades
    assert migrations.current(url) == migrations.HEAD
    assert schema_diff(url, metadata) == []
    check_upgraded(url, before, table_rows(url))


def test_cli_db_current_and_upgrade(tmp_path, make_legacy_db, table_rows, schema_diff, check_upgraded):
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data}/crashes.db"
    make_legacy_db(url)
    before = table_rows(url)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data), "db", *args],
                              capture_output=True, text=True, check=True,
                              env={"PATH": "/usr/bin:/bin", "CORETRIAGE_DATABASE_URL": url}).stdout.strip()

    assert cli("current") == f"unversioned (this coretriage needs {migrations.HEAD})"
    assert cli("upgrade") == f"upgraded from unversioned to {migrations.HEAD}"
    assert cli("upgrade") == f"already at {migrations.HEAD}"
    assert cli("current") == f"{migrations.HEAD} (up to date)"
    check_upgraded(url, before, table_rows(url))


def test_first_revision_is_the_schema_before_migrations(tmp_path, legacy_store, schema_diff):
    url = f"sqlite:///{tmp_path}/crashes.db"
    assert migrations.upgrade(url, "0001") == (None, "0001")
    assert schema_diff(url, legacy_store.metadata) == []
    assert migrations.upgrade(url) == ("0001", migrations.HEAD)
    assert schema_diff(url, metadata) == []


def test_fresh_database_made_once_by_concurrent_openers(tmp_path, schema_diff, open_concurrently):
    url = f"sqlite:///{tmp_path}/crashes.db"
    open_concurrently(url)
    assert migrations.current(url) == migrations.HEAD
    assert schema_diff(url, metadata) == []


def test_database_newer_than_the_code_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/crashes.db"
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="9999.*upgrade coretriage"):
        Store(url)


def test_revision_list_is_alembics():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations.__path__[0]))
    script = ScriptDirectory.from_config(config)
    walked = [s.revision for s in script.walk_revisions()][::-1]
    assert tuple(walked) == migrations.REVISIONS and script.get_current_head() == migrations.HEAD


def test_importing_the_store_does_not_import_alembic():
    code = "import sys, coretriage.store; print(sorted(m for m in sys.modules if m.startswith(('alembic', 'mako'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"
