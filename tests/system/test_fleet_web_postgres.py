"""The web UI at fleet scale, on a real PostgreSQL and a real gunicorn.

Migration 0007 creates pg_trgm and the trigram index of the group search
(pg_indexes says so) and the per-group counts; the search, with the index
forced and without it (downgraded to 0004), finds exactly what the search
means; gunicorn, started as the README says, serves the login page and a
group list over HTTP, and so does ``coretriage web --workers``. The timing
is bench/fleetui.py's, never this file's."""

import re

import pytest
import sqlalchemy as sa

from coretriage import migrations
from coretriage.store import Store
from fleetstore import (GROUPS, NOW, QUERIES, check_capped_count, check_page_reads, counted_days, counted_facets,
                        distinct_values, expected_matches, fill, migrate, search)
from pgserver import create_database, postgres_server
from webclient import Client
from webserver import add_user, gunicorn_server, web_server

# the schema just before 0007 (the search index and the per-group counts)
BEFORE_0007 = migrations.REVISIONS[migrations.REVISIONS.index("0007") - 1]


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def _trigram_index(url):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            index = db.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'groups' "
                                       "AND indexname = 'ix_groups_search_trgm'")).scalar()
            extension = db.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'pg_trgm'")).scalar()
        return index, extension
    finally:
        engine.dispose()


def test_migration_creates_the_trigram_index_and_the_search_finds_the_same(pg_url):
    url = create_database(pg_url, "search")
    migrate(url, BEFORE_0007)
    assert _trigram_index(url) == (None, None)
    migrate(url, migrations.HEAD)
    index, extension = _trigram_index(url)
    assert extension and index and "USING gin (search_text gin_trgm_ops)" in index

    store = Store(url)
    try:
        fill(store)
        expected = {q: expected_matches(q) for q in QUERIES}
        assert search(store, "header") == {"parse_header | read_request | main"}
        assert {q: search(store, q) for q in QUERIES} == expected

        # the planner on a small table scans it: force the index and ask again
        forced = sa.create_engine(url, connect_args={"options": "-c enable_seqscan=off"})
        try:
            with forced.connect() as db:
                plan = "\n".join(db.execute(sa.text("EXPLAIN SELECT id FROM groups WHERE search_text ILIKE :p"),
                                            {"p": "%header%"}).scalars())
            assert "ix_groups_search_trgm" in plan, plan
            store.engine, plain = forced, store.engine
            assert {q: search(store, q) for q in QUERIES} == expected
            store.engine = plain
        finally:
            forced.dispose()

        migrate(url, BEFORE_0007)  # before: no index, the same query
        assert _trigram_index(url)[0] is None
        assert {q: search(store, q) for q in QUERIES} == expected
        migrate(url, migrations.HEAD)
        assert {q: search(store, q) for q in QUERIES} == expected
    finally:
        store.close()


def test_counts_and_choices_on_postgres_match_counting_the_crashes(pg_url):
    url = create_database(pg_url, "counts")
    store = Store(url)
    try:
        fill(store)
        ids = [g.id for g in store.groups(limit=1000)]
        assert len(ids) == len(GROUPS)
        before = store.facets(ids), store.daily_counts(ids, days=60, now=NOW)
        assert before == (counted_facets(store.engine, ids), counted_days(store.engine, ids, 60, NOW))
        migrate(url, BEFORE_0007)
        migrate(url, migrations.HEAD)  # the migration's own fill from the crashes
        assert (store.facets(ids), store.daily_counts(ids, days=60, now=NOW)) == before
        store.recount()
        assert (store.facets(ids), store.daily_counts(ids, days=60, now=NOW)) == before
        expected = distinct_values(store.engine)  # the filters' choices, by a loose index scan
        assert {col: store.distinct(col) for col in expected} == expected and len(expected["host"]) == 3
        check_capped_count(store)
        check_page_reads(store)  # the list's top tags, the choices in one statement, architectures from the tail
    finally:
        store.close()


def _served_group_list(base: str) -> None:
    c = Client(base)
    login = c.get("/login")
    assert login.status == 200 and 'name="csrf_token"' in login.text
    assert c.get("/").status == 302  # not logged in
    assert c.login("viewer", "viewer-password-1").status == 302
    page = c.get("/?q=header")
    assert page.status == 200
    assert re.search(r"<small>1 match", page.text) and "parse_header | read_request | main" in page.text
    listing = c.get("/")
    assert listing.status == 200 and f"{len(GROUPS)} match" in listing.text
    assert len(set(re.findall(r'href="/groups/(\d+)"', listing.text))) == len(GROUPS)


@pytest.fixture
def served_data(pg_url, tmp_path):
    url = create_database(pg_url, f"web{abs(hash(tmp_path.name)) % 10**8}")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "coretriage.toml").write_text(f'database_url = "{url}"\n')
    store = Store(url)
    try:
        fill(store)
    finally:
        store.close()
    add_user(data, "viewer", "viewer", "viewer-password-1")
    return data


def test_gunicorn_serves_the_login_page_and_a_group_list(served_data, tmp_path):
    with gunicorn_server(served_data, tmp_path / "gunicorn.log", workers=2) as base:
        _served_group_list(base)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Booting worker" in log and "Traceback" not in log


def test_coretriage_web_workers_runs_gunicorn(served_data, tmp_path):
    with web_server(served_data, tmp_path / "web.log", args=("--workers", "2")) as base:
        _served_group_list(base)
    log = (tmp_path / "web.log").read_text()
    assert "with gunicorn, 2 workers" in log and "Booting worker" in log and "Traceback" not in log
