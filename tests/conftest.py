"""Shared fixtures. Sample cores are made for real (the kernel writes them),
once per test session, by the recipes under sample-cores/.

A test's kind is the folder it lives in: every test under tests/unit is
marked ``unit``, tests/integration ``integration``, tests/system ``system``
(``pytest -m "not system"``). The helper modules the tests import
(sample-cores/, tests/system/, tests/unit/) are on sys.path through the
``pythonpath`` setting in pyproject.toml."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
KINDS = ("unit", "integration", "system", "adversarial")  # folders under tests/, and their markers


def kind_of(path: Path) -> str | None:
    """The folder under tests/ a test file is in, if it is one of KINDS."""
    try:
        folder = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return folder if folder in KINDS else None


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = kind_of(item.path)
        if kind is not None:
            item.add_marker(kind)


@pytest.fixture
def config(tmp_path):
    from coretriage.config import load_config

    return load_config(tmp_path / "data")


@pytest.fixture
def store(config):
    from coretriage.store import Store

    config.data_dir.mkdir(parents=True, exist_ok=True)
    s = Store(config.database_url)
    yield s
    s.close()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("sample cores need root (core_pattern); run the tests as root")
    return tmp_path_factory.mktemp("samples")


@pytest.fixture(scope="session")
def samples(sample_dir):
    """name -> Sample, one real crash of every native recipe."""
    from recipes import native

    cache = {}

    def get(name: str, variant: int = 0):
        key = (name, variant)
        if key not in cache:
            cache[key] = native.RECIPES[name](sample_dir, variant)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def analyzed(samples):
    """name -> (Sample, Analysis, Signature), analyzed once per session."""
    from analyzer.analyze import analyze_core
    from analyzer.signature import generate

    cache = {}

    def get(name: str, variant: int = 0):
        key = (name, variant)
        if key not in cache:
            s = samples(name, variant)
            a = analyze_core(s.core, s.exe)
            cache[key] = (s, a, generate(a))
        return cache[key]

    return get


# -- databases made before migrations (tests/*/test_migrations*.py) ----------
LEGACY_COMMIT = "336391d"  # the last store that made its own schema


@pytest.fixture(scope="session")
def legacy_store(tmp_path_factory):
    """The store module as it was before migrations, its exact source from
    git, loaded under another name: it makes the databases the migration
    tests upgrade."""
    import importlib.util
    import subprocess

    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{LEGACY_COMMIT}:analyzer/store.py"],
                            capture_output=True, text=True, check=True).stdout
    path = tmp_path_factory.mktemp("legacy") / "legacy_store.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("legacy_store", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _fill_legacy(legacy, url: str) -> None:
    """Crashes in three groups with states and notes, users and a token,
    through the old store's own API."""
    old = legacy.Store(url)
    try:
        def crash(n, signature, at, **where):
            old.add_crash(crash_id=f"c{n:012x}", signature=signature, signature_data={"text": signature},
                          analysis={"core": f"/cores/{n}", "threads": [], "problems": [f"p{n}"]},
                          crashed_at=at, executable="/usr/sbin/haproxy", signal="SIGSEGV", quality=0.5 + n / 10,
                          core_file=f"cores/c{n:012x}.core.zst", exe_file="/files/x/haproxy", sysroot=None,
                          meta={"pid": n, "environ": {"LANG": "C"}}, key_frame=signature.split(" | ")[0],
                          search_text=f"{signature} frame{n}", **where)

        crash(1, "parse_request | main", 1000.0, host="web-1", image="shop:1.2", container="shop-api")
        crash(2, "parse_request | main", 2000.0, host="web-2", image="shop:1.3", container="shop-api")
        crash(3, "parse_request | main", 1500.0, host="web-1")
        crash(4, "session_release | worker", 3000.0, host="worker-7", image="billing:3.4")
        crash(5, "strlen | header_length | main", 4000.0)
        ids = {g.signature: g.id for g in old.groups()}
        old.set_state(ids["parse_request | main"], "acknowledged", "BILL-42: seen in production")
        old.set_state(ids["session_release | worker"], "resolved", "fixed in 3.5")
        old.set_state(ids["strlen | header_length | main"], "ignored")
        old.add_user("alice", "hash-of-alice", "admin")
        old.add_user("bob", "hash-of-bob", "viewer")
        old.add_token("alice", "a" * 64)
    finally:
        old.close()


def _table_rows(url: str) -> dict[str, list[dict]]:
    """Every row of every table, in key order."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return {table: [dict(r._mapping) for r in db.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]
                    for table in ("groups", "crashes", "users", "api_tokens")}
    finally:
        engine.dispose()


@pytest.fixture
def make_legacy_db(legacy_store):
    """url -> a database made and filled by the store before migrations."""
    return lambda url: _fill_legacy(legacy_store, url)


@pytest.fixture
def table_rows():
    return _table_rows


def _schema_diff(url, target) -> list:
    """What Alembic's autogenerate would change to make the database ``target``."""
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = sa.create_engine(url)

    def include(obj, name, type_, reflected, compare_to):
        # an index only some backends have (Index.ddl_if(dialect=...)), e.g. PostgreSQL's trigrams
        only = getattr(obj, "_ddl_if", None) if not reflected else None
        return not (only is not None and only.dialect not in (None, engine.dialect.name))

    try:
        with engine.connect() as db:
            return compare_metadata(MigrationContext.configure(db, opts={"include_object": include}), target)
    finally:
        engine.dispose()


def _record(crash_id, signature, at, **where):
    from coretriage.records import Analyzed, CrashRecord

    return CrashRecord(id=crash_id, crashed_at=at, meta={"pid": 1}, **where, analyzed=Analyzed(
        signature=signature, signature_data={"text": signature}, analysis={"core": "x", "threads": []},
        executable="/usr/sbin/haproxy", signal="SIGSEGV", quality=0.9, key_frame="f",
        search_text=signature, rules_version="1-abc"))


def _check_upgraded(url, before, after):
    """Every row the old store wrote is still there, unchanged; the new columns
    are null on old crashes, old tokens get an expiry; the upgraded store files
    a new crash."""
    assert {t: len(rows) for t, rows in before.items()} == {"groups": 3, "crashes": 5, "users": 2, "api_tokens": 1}
    # 0009: groups not renamed by arriving symbols
    assert [{k: v for k, v in row.items() if k not in ("renamed_from", "renamed_at")}
            for row in after["groups"]] == before["groups"]
    assert all(row["renamed_from"] is None and row["renamed_at"] is None for row in after["groups"])
    assert after["users"] == before["users"]
    # 0003: tokens made before expiry get one ~90 days on, and no last use yet
    new_token_columns = ("expires", "last_used")
    assert [{k: v for k, v in row.items() if k not in new_token_columns}
            for row in after["api_tokens"]] == before["api_tokens"]
    import time
    assert all(80 * 86400 < row["expires"] - time.time() <= 90 * 86400 and row["last_used"] is None
               for row in after["api_tokens"])
    new_crash_columns = ("rules_version", "analysis_seconds", "dropped", "bundle_id", "failure")  # 0002, 0008, 0006, 0010
    assert [{k: v for k, v in row.items() if k not in new_crash_columns}
            for row in after["crashes"]] == before["crashes"]
    assert all(row[k] is None for row in after["crashes"] for k in new_crash_columns)

    from coretriage.store import GroupQuery, Store

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

        row, new = store.add_crash(_record("cabcdefabcdef", "session_release | worker", 5000.0, host="worker-8"))
        assert new and row.group_id == resolved.id and row.rules_version == "1-abc"
        again = store.group(resolved.id)
        assert (again.state, again.count, again.last_seen) == ("regressed", 2, 5000.0)
        found, total = store.find_groups(GroupQuery(host="worker-8"))
        assert total == 1 and found[0].id == resolved.id
        assert store.find_groups(GroupQuery())[1] == 3
    finally:
        store.close()


@pytest.fixture
def schema_diff():
    return _schema_diff


@pytest.fixture
def check_upgraded():
    """(url, rows before, rows after): asserts every row the old store wrote
    is intact and that the upgraded store works."""
    return _check_upgraded


def _open_concurrently(url: str, openers: int = 6) -> None:
    """Several processes open the same new database at once; each must succeed."""
    import subprocess
    import sys

    code = "import sys; from coretriage.store import Store; Store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
             for _ in range(openers)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()


@pytest.fixture
def open_concurrently():
    return _open_concurrently
