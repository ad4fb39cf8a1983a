"""Shared by the fleet-scale store tests on SQLite (tests/integration) and
PostgreSQL (tests/system): groups whose search texts hold what a search has
to get right (case, ``%``, ``_``, backslashes, short words, non-ASCII), the
search's meaning written out in Python, the per-group counts as the store
computed them before migration 0007 (a GROUP BY over every crash), and a
way to move a database between schema revisions in both directions."""

from __future__ import annotations

import random
from pathlib import Path

import sqlalchemy as sa

from coretriage.records import Analyzed, CrashRecord, GroupQuery

DAY = 86400.0
NOW = 1_790_000_000.0  # a fixed "now": the day boundaries do not move under the test

# (signature, the rest of its search text)
GROUPS = [
    ("parse_header | read_request | main", "/usr/sbin/haproxy parse_header read_request main"),
    ("Decode_Packet | recv_loop | main", "/srv/svc-07/bin/svc-07 Decode_Packet recv_loop main"),
    ("exec_simple_query | PostgresMain | main", "/usr/lib/postgresql/15/bin/postgres exec_simple_query"),
    ("report_100%_done | flush_stats", "/opt/app/bin/stats report_100%_done flush_stats"),
    ("path\\join | open_file", "C:\\tools\\x.exe path\\join open_file"),
    ("überprüfung | prüfe_eingabe", "/usr/bin/prüfer überprüfung prüfe_eingabe"),
    ("ab | xy", "/bin/ab ab xy"),
    ("__memmove_avx_unaligned_erms | copy_rows", "/srv/etl/bin/etl __memmove_avx_unaligned_erms copy_rows"),
]

QUERIES = ["header", "HEADER", "haproxy", "sbin/hap", "er_re", "ars_he", "svc-07", "decode_packet", "100%",
           "%", "_", "\\", "path\\j", "über", "prüf", "ab", "a", "xy ab", "main parse", "main nomatch",
           "exec_simple query", "no-such-word", "rows", "memmove avx"]


def ascii_lower(text: str) -> str:
    # both backends fold ASCII only (SQLite's lower(), PostgreSQL's ILIKE in the C locale)
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def expected_matches(query: str) -> set[str]:
    """The search's meaning: every word (at most 8) a case-insensitive substring."""
    words = query.split()[:8]
    return {sig for sig, rest in GROUPS
            if all(ascii_lower(w) in ascii_lower(f"{sig} {rest}") for w in words)}


def fill(store, crashes_per_group: int = 6, seed: int = 5) -> list[str]:
    """Crashes over 40 days on a few hosts, images and containers (some
    missing), every group of GROUPS; returns the crash ids."""
    rng = random.Random(seed)
    ids = []
    for gi, (sig, rest) in enumerate(GROUPS):
        for k in range(crashes_per_group + gi):
            crash_id = f"c{gi:06x}{k:06x}"
            at = NOW - rng.uniform(0, 40) * DAY
            host = rng.choice(["node-1", "node-2", "node-3", None])
            image = rng.choice(["reg/app:1", "reg/app:2", None])
            container = rng.choice(["app-1", "app-2", "db-1", None])
            store.add_crash(CrashRecord(
                id=crash_id, crashed_at=at, host=host, image=image, container=container, meta={"pid": k},
                analyzed=Analyzed(signature=sig, signature_data={"text": sig}, analysis={"core": "x", "threads": []},
                                  executable=rest.split()[0], signal="SIGSEGV", quality=1.0,
                                  key_frame=sig.split(" | ")[0], search_text=f"{sig} {rest}")))
            ids.append(crash_id)
    return ids


def search(store, query: str) -> set[str]:
    rows, total = store.find_groups(GroupQuery(search=query, limit=200))
    assert total == len(rows)
    return {r.signature for r in rows}


def counted_facets(engine, group_ids) -> dict:
    """Store.facets as it was before 0007: counted from the crashes."""
    out = {i: {} for i in group_ids}
    with engine.connect() as db:
        for name in ("host", "image", "container"):
            rows = db.execute(sa.text(f"SELECT group_id, {name}, count(*) FROM crashes WHERE {name} IS NOT NULL "
                                      f"GROUP BY group_id, {name} ORDER BY count(*) DESC, {name}")).all()
            for gid, value, count in rows:
                if gid in out:
                    out[gid].setdefault(name, []).append((value, count))
    return out


def counted_days(engine, group_ids, days: int, now: float) -> dict:
    """Store.daily_counts as it was before 0007."""
    start = int(now // DAY) - days + 1
    out = {i: [0] * days for i in group_ids}
    with engine.connect() as db:
        for gid, at in db.execute(sa.text("SELECT group_id, crashed_at FROM crashes")).all():
            d = int(at // DAY) - start
            if gid in out and 0 <= d < days:
                out[gid][d] += 1
    return out


def distinct_values(engine) -> dict:
    """Store.distinct as it was: SELECT DISTINCT over every row."""
    out = {}
    with engine.connect() as db:
        for col in ("executable", "signal", "host", "image", "container"):
            table = "groups" if col in ("executable", "signal") else "crashes"
            out[col] = list(db.execute(sa.text(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL "
                                               f"ORDER BY {col}")).scalars())
    return out


def migrate(url: str, revision: str) -> None:
    """Upgrade or downgrade the database to ``revision`` with Alembic."""
    from alembic import command
    from alembic.config import Config

    import coretriage.migrations as migrations

    engine = sa.create_engine(url)
    try:
        with engine.begin() as db:
            config = Config()
            config.set_main_option("script_location", str(Path(migrations.__file__).parent))
            config.attributes["connection"] = db
            current = migrations.revision_of(db)
            order = list(migrations.REVISIONS)
            if current and order.index(current) > order.index(revision):
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
    finally:
        engine.dispose()


def add_architecture_crashes(store) -> dict[str, str | None]:
    """Three crashes of one new group whose analyses record their
    architecture as the last key (as the analyzer writes it), before a long
    field (not in the text's last 200 bytes), and not at all; crash id ->
    the architecture the group page must show."""
    threads = [{"number": 1, "frames": [{"function": f"f{i}", "file": "ü.c"} for i in range(40)]}]
    analyses = {"c0a0000000001": {"core": "x", "threads": threads, "architecture": "aarch64"},
                "c0a0000000002": {"architecture": "x86_64", "core": "x", "threads": threads},
                "c0a0000000003": {"core": "x", "threads": threads}}
    for k, (crash_id, analysis) in enumerate(analyses.items()):
        store.add_crash(CrashRecord(
            id=crash_id, crashed_at=NOW - k * 60, host="node-9", image=None, container=None, meta={},
            analyzed=Analyzed(signature="arch | probe", signature_data={"text": "arch | probe"}, analysis=analysis,
                              executable="/bin/arch", signal="SIGILL", quality=1.0, key_frame="arch",
                              search_text="arch probe")))
    return {crash_id: a.get("architecture") for crash_id, a in analyses.items()}


def check_page_reads(store) -> None:
    """The pages' narrower reads give what the plain ones give: the group
    list's top tags, the filter choices in one statement, and a group
    page's crashes with the architecture read from each analysis' tail."""
    ids = [g.id for g in store.groups(limit=1000)]
    full = store.facets(ids)
    top = store.facets(ids, ("host", "image"), 1)
    assert top == {i: {k: v[:1] for k, v in f.items() if k in ("host", "image")} for i, f in full.items()}
    assert any(len(v) > 1 for f in full.values() for v in f.values())  # something was left out
    assert store.facets(ids, None, 2) == {i: {k: v[:2] for k, v in f.items()} for i, f in full.items()}
    columns = ("executable", "signal", "host")
    assert store.distinct_values(columns) == {c: store.distinct(c) for c in columns}
    assert store.distinct_values(columns, limit=2) == {c: store.distinct(c)[:2] for c in columns}

    expected = add_architecture_crashes(store)
    group = [g for g in store.groups(limit=1000) if g.signature == "arch | probe"][0]
    plain = store.crash_summaries(group.id)
    shown = store.crash_summaries(group.id, architecture=True)
    assert {c["id"]: c["architecture"] for c in shown} == expected
    assert [{k: v for k, v in c.items() if k != "architecture"} for c in shown] == plain
    assert [c["id"] for c in plain] == sorted(expected)  # newest first


def check_capped_count(store) -> None:
    """A search's count stops past its page when asked to (the web UI's
    "1,000+"), and is exact when the matches end first: the same groups,
    whichever way they are counted."""
    word = "a"  # in every group's text
    matching = expected_matches(word)
    assert len(matching) == len(GROUPS)
    for offset in (0, 2):
        exact = store.find_groups(GroupQuery(search=word, limit=2, offset=offset))
        capped = GroupQuery(search=word, limit=2, offset=offset, count_limit=1)
        rows, total = store.find_groups(capped)
        assert exact[1] == len(GROUPS) and [r.id for r in rows] == [r.id for r in exact[0]]
        assert total == offset + 3 and capped.count_capped(total)  # the page and one past it, at least
    roomy = GroupQuery(search=word, limit=2, count_limit=len(GROUPS) + 1)
    rows, total = store.find_groups(roomy)
    assert total == len(GROUPS) and not roomy.count_capped(total)
    last = GroupQuery(search=word, limit=5, offset=5, count_limit=1)  # the last page is counted exactly
    rows, total = store.find_groups(last)
    assert len(rows) == 3 and total == len(GROUPS) and not last.count_capped(total)
