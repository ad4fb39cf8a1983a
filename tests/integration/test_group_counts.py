"""Migration 0007 on SQLite: no search index (one host's store is scanned),
the search finds what it found before, and the per-group counts it adds
(group_facets, group_days) are what counting the crashes gives, through
storing, moving (reprocess) and recounting crashes and through the
migration's own fill of an existing database."""

import sqlalchemy as sa

from coretriage import migrations
from coretriage.records import Analyzed, GroupQuery
from fleetstore import (GROUPS, NOW, QUERIES, check_capped_count, check_page_reads, counted_days, counted_facets, distinct_values,
                        expected_matches, fill, migrate, search)

# the schema just before 0007 (the search index and the per-group counts)
BEFORE_0007 = migrations.REVISIONS[migrations.REVISIONS.index("0007") - 1]


def _same_counts(store):
    ids = [g.id for g in store.groups(limit=1000)]
    assert len(ids) == len(GROUPS)
    assert store.facets(ids) == counted_facets(store.engine, ids)
    for days in (30, 90):
        assert store.daily_counts(ids, days=days, now=NOW) == counted_days(store.engine, ids, days, NOW)
    assert sum(map(sum, store.daily_counts(ids, days=90, now=NOW).values())) == sum(g.count for g in store.groups())


def test_no_search_index_on_sqlite_and_the_search_is_unchanged(store):
    fill(store)
    with store.engine.connect() as db:
        names = set(db.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
    assert "ix_groups_search_trgm" not in names and "ix_groups_search_text" not in names
    assert {"ix_groups_last_seen", "ix_crashes_group"} <= names
    after = {q: search(store, q) for q in QUERIES}
    assert after == {q: expected_matches(q) for q in QUERIES}
    assert after["header"] == {"parse_header | read_request | main"} and after["100%"] and after["\\"]

    url = str(store.engine.url)
    migrate(url, BEFORE_0007)  # the schema before: the same query, the same answers
    assert migrations.current(url) == BEFORE_0007
    assert {q: search(store, q) for q in QUERIES} == after
    migrate(url, migrations.HEAD)
    assert {q: search(store, q) for q in QUERIES} == after


def test_counts_follow_stored_moved_and_recounted_crashes(store):
    crash_ids = fill(store)
    _same_counts(store)
    # reprocess moves crashes into another (new) group
    for crash_id in crash_ids[:5]:
        store.update_analysis(crash_id, Analyzed(signature="moved | elsewhere", signature_data={},
                                                 analysis={"core": "x", "threads": []}, executable="/bin/m",
                                                 signal="SIGABRT", quality=1.0, search_text="moved elsewhere"))
    ids = [g.id for g in store.groups(limit=1000)]
    # counted out of the old groups and into the new one at once, before any recount
    assert store.facets(ids) == counted_facets(store.engine, ids)
    assert store.daily_counts(ids, days=60, now=NOW) == counted_days(store.engine, ids, 60, NOW)
    store.recount()
    moved = [g for g in store.groups(limit=1000) if g.signature == "moved | elsewhere"][0]
    ids = [g.id for g in store.groups(limit=1000)]
    assert store.facets(ids) == counted_facets(store.engine, ids)
    assert store.daily_counts(ids, days=60, now=NOW) == counted_days(store.engine, ids, 60, NOW)
    assert sum(store.daily_counts([moved.id], days=60, now=NOW)[moved.id]) == moved.count == 5
    with store.engine.connect() as db:
        assert db.exec_driver_sql("SELECT count(*) FROM group_facets WHERE count <= 0").scalar() == 0


def test_the_migration_fills_the_counts_of_an_existing_database(store):
    fill(store)
    ids = [g.id for g in store.groups(limit=1000)]
    before = store.facets(ids), store.daily_counts(ids, days=60, now=NOW)
    url = str(store.engine.url)
    migrate(url, BEFORE_0007)
    with store.engine.connect() as db:
        assert not sa.inspect(db).has_table("group_facets")
    migrate(url, migrations.HEAD)  # counts every crash already stored
    assert (store.facets(ids), store.daily_counts(ids, days=60, now=NOW)) == before
    _same_counts(store)


def test_filter_choices_are_every_distinct_value_in_order(store):
    fill(store)
    expected = distinct_values(store.engine)
    assert len(expected["executable"]) == len(GROUPS) and expected["host"] == ["node-1", "node-2", "node-3"]
    assert {col: store.distinct(col) for col in expected} == expected
    assert store.distinct("executable", limit=3) == expected["executable"][:3]


def test_the_pages_narrower_reads_give_what_the_plain_ones_give(store):
    fill(store)
    check_page_reads(store)


def test_every_page_of_the_list_tells_the_same_total(store):
    fill(store)
    n = len(GROUPS)
    pages = [store.find_groups(GroupQuery(limit=3, offset=offset)) for offset in range(0, n + 6, 3)]
    assert [len(rows) for rows, _ in pages] == [3, 3, n - 6, 0, 0]
    assert {total for _, total in pages} == {n}
    assert [r.id for rows, _ in pages for r in rows] == [g.id for g in store.groups(limit=100)]
    matching = expected_matches("main")
    rows, total = store.find_groups(GroupQuery(search="main", limit=2, offset=2))
    assert total == len(matching) and len(rows) == min(2, len(matching) - 2)
    check_capped_count(store)
