"""Schema migrations (coretriage/migrations) on SQLite: databases made by the
store before migrations are upgraded in place, fresh ones are made at head."""

import subprocess
import sys

import pytest
import sqlalchemy as sa

from coretriage import migrations
from coretriage.records import Analyzed, CrashRecord
from coretriage.store import GroupQuery, SchemaError, Store, metadata


def schema_diff(url, target) -> list:
    """What Alembic's autogenerate would change to make the database ``target``."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return compare_metadata(MigrationContext.configure(db), target)
    finally:
        engine.dispose()


def record(crash_id, signature, at, **where) -> CrashRecord:
    return CrashRecord(id=crash_id, crashed_at=at, meta={"pid": 1}, **where, analyzed=Analyzed(
        signature=signature, signature_data={"text": signature}, analysis={"core": "x", "threads": []},
        executable="/usr/sbin/haproxy", signal="SIGSEGV", quality=0.9, key_frame="f",
        search_text=signature, rules_version="1-abc"))


def assert_intact_and_working(url, before, after):
    """Every row the old store wrote is still there, unchanged; the new column
    is null on old crashes; the upgraded store files a new crash."""
    assert {t: len(rows) for t, rows in before.items()} == {"groups": 3, "crashes": 5, "users": 2, "api_tokens": 1}
    assert after["groups"] == before["groups"]
    assert after["users"] == before["users"] and after["api_tokens"] == before["api_tokens"]
    assert [{k: v for k, v in row.items() if k != "rules_version"} for row in after["crashes"]] == before["crashes"]
    assert all(row["rules_version"] is None for row in after["crashes"])

    store = Store(url)
    try:
        by_sig = {g.signature: g for g in store.groups()}
        resolved = by_sig["session_release | worker"]
        assert (resolved.state, resolved.note, resolved.count) == ("resolved", "fixed in 3.5", 1)
        assert by_sig["parse_request | main"].note == "BILL-42: seen in production"
        assert store.user_for_token("a" * 64).name == "alice"
        assert store.user_record("bob")[0].role == "viewer"
        old = store.crash("c000000000001")
        assert old.analysis["problems"] == ["p1"] and old.meta["environ"] == {"LANG": "C"}
        assert old.rules_version is None

        row, new = store.add_crash(record("cabcdefabcdef", "session_release | worker", 5000.0, host="worker-8"))
        assert new and row.group_id == resolved.id and row.rules_version == "1-abc"
        again = store.group(resolved.id)
        assert (again.state, again.count, again.last_seen) == ("regressed", 2, 5000.0)
        found, total = store.find_groups(GroupQuery(host="worker-8"))
        assert total == 1 and found[0].id == resolved.id
        assert store.find_groups(GroupQuery())[1] == 3
    finally:
        store.close()


def test_database_made_before_migrations_is_upgraded_in_place(tmp_path, make_legacy_db, table_rows):
    url = f"sqlite:///{tmp_path}/crashes.db"
    make_legacy_db(url)
    before = table_rows(url)
    assert migrations.current(url) == migrations.UNVERSIONED
    Store(url).close()  # SQLite: opening upgrades
    assert migrations.current(url) == migrations.HEAD
    assert schema_diff(url, metadata) == []
    assert_intact_and_working(url, before, table_rows(url))


def test_cli_db_current_and_upgrade(tmp_path, make_legacy_db, table_rows):
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
    assert_intact_and_working(url, before, table_rows(url))


def test_first_revision_is_the_schema_before_migrations(tmp_path, legacy_store):
    url = f"sqlite:///{tmp_path}/crashes.db"
    assert migrations.upgrade(url, "0001") == (None, "0001")
    assert schema_diff(url, legacy_store.metadata) == []
    assert migrations.upgrade(url) == ("0001", migrations.HEAD)
    assert schema_diff(url, metadata) == []


def test_fresh_database_made_once_by_concurrent_openers(tmp_path):
    url = f"sqlite:///{tmp_path}/crashes.db"
    code = "import sys; from coretriage.store import Store; Store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
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
