"""How fast is the web UI on a big store?

Run as ``.venv/bin/python bench/webui.py``. It fills a fresh SQLite store in
a temporary directory with 100,000 crashes in 5,000 groups (inserted directly
with SQLAlchemy core ``executemany`` into ``coretriage.store``'s tables: no gdb,
no cores), with a skewed crashes-per-group distribution, 20 hosts, 30 images,
``crashed_at`` spread over 90 days, small but realistic analysis JSON (one
thread, ten frames), signatures, key frames and search text, and group
counts, first and last seen consistent with their crashes.

Then, through Flask's test client (a logged-in session for pages, a bearer
token for the API), it times N requests each of the group list (default
sort), the group list by count, random group pages, searches for random
words from frame names and ``/api/v1/groups``, printing p50 and p95 in ms
and the verdict against the target: group list p95 under 200 ms.

For one request of each kind it also reports the SQL statements it ran and
their time (SQLAlchemy cursor events), so the slow query is named; with
``--profile`` (or when the target is missed) it prints a cProfile of one
group-list request and of the largest group's page, and SQLite's EXPLAIN
QUERY PLAN for the list's queries. ``--facet-indexes`` adds covering indexes
on crashes(group_id, host|image|container) first: the suggested fix, timed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_MS = 200.0  # group list p95
FACET_COLUMNS = ("host", "image", "container")
DAY = 86400

LIBC_ABORT = ["__pthread_kill_implementation", "__pthread_kill_internal", "raise", "abort"]
LIBC_START = ["__libc_start_call_main", "__libc_start_main_impl", "_start"]
VERBS = ["parse", "read", "write", "flush", "handle", "process", "decode", "encode", "release", "acquire",
         "lookup", "insert", "update", "resolve", "dispatch", "send", "recv", "close", "open", "validate",
         "compress", "hash", "route", "schedule", "commit"]
NOUNS = ["header", "request", "response", "session", "buffer", "frame", "packet", "row", "index", "cache",
         "config", "token", "stream", "queue", "socket", "table", "entry", "chunk", "record", "message",
         "channel", "pool", "lock", "tuple", "page"]
SIGNALS = [("SIGSEGV", 11, 0.68), ("SIGABRT", 6, 0.25), ("SIGBUS", 7, 0.03), ("SIGFPE", 8, 0.02),
           ("SIGILL", 4, 0.02)]


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def make_data(rng: random.Random, n_groups: int, n_crashes: int, now: float):
    """Rows for the groups and crashes tables, consistent with each other."""
    functions = [f"{v}_{n}" for v in VERBS for n in NOUNS]  # 625 program function names
    hosts = [f"node-{i:02d}.dc1" for i in range(1, 21)]
    images = [f"registry.internal/team{i % 6}/svc-{i:02d}:{1 + i % 4}.{i % 10}" for i in range(30)]
    executables = ([f"/srv/svc-{i:02d}/bin/svc-{i:02d}" for i in range(30)]
                   + ["/usr/sbin/haproxy", "/usr/lib/postgresql/15/bin/postgres", "/usr/sbin/nginx"])
    sig_names, sig_weights = [s[0] for s in SIGNALS], [s[2] for s in SIGNALS]

    # crashes per group: one each, the rest Pareto-weighted (a few loud bugs)
    weights = [rng.paretovariate(1.2) for _ in range(n_groups)]
    total_w = sum(weights)
    counts = [1 + int((n_crashes - n_groups) * w / total_w) for w in weights]
    counts[0] += n_crashes - sum(counts)  # exact total

    groups, crashes = [], []
    seen_sigs = set()
    crash_no = 0
    for gi in range(n_groups):
        gid = gi + 1
        exe_i = rng.randrange(len(executables))
        exe = executables[exe_i]
        signal, signo = rng.choices(list(zip(sig_names, [s[1] for s in SIGNALS])), weights=sig_weights)[0]
        while True:
            program = rng.sample(functions, 6) + ["main"]
            sig_frames = program[:3]
            text = " | ".join(sig_frames)
            if text not in seen_sigs:
                seen_sigs.add(text)
                break
        top = (LIBC_ABORT if signal == "SIGABRT" else ["__memmove_avx_unaligned_erms"])
        names = (top + program + LIBC_START)[:10]
        key_index = len(top)
        frames = [{"index": i, "pc": 0x5600_0000_1000 + 0x40 * i + gi, "function": name,
                   "module": "/usr/lib/x86_64-linux-gnu/libc.so.6" if name in top or name in LIBC_START else exe,
                   "build_id": f"{gi:040x}", "offset": 0x1000 + 0x40 * i,
                   "file": None if name in top or name in LIBC_START else f"src/{name.split('_')[-1]}.c",
                   "line": None if name in top or name in LIBC_START else 10 + i}
                  for i, name in enumerate(names)]
        signature_data = {"text": text, "frames": sig_frames,
                          "skipped": [[f"#{i} {n}", "abort machinery"] for i, n in enumerate(top)],
                          "key_frames": [key_index, key_index + 1, key_index + 2], "quality": 1.0}
        search_text = " ".join([text, exe, *names])
        g_hosts = rng.sample(hosts, rng.randint(1, 6))
        g_images = rng.sample(images, rng.randint(1, 2))
        times = [now - rng.random() * 90 * DAY for _ in range(counts[gi])]
        groups.append({"id": gid, "signature": text, "executable": exe, "signal": signal,
                       "count": len(times), "first_seen": min(times), "last_seen": max(times),
                       "quality": 1.0, "state": rng.choices(
                           ["new", "acknowledged", "resolved", "regressed", "ignored"], [70, 15, 8, 4, 3])[0],
                       "note": "", "key_frame": program[0], "search_text": search_text})
        sig_json = json.dumps(signature_data)
        for t in times:
            crash_no += 1
            host, image = rng.choice(g_hosts), rng.choice(g_images)
            container = f"{image.split('/')[-1].split(':')[0]}-{rng.randrange(8)}"
            pid = rng.randint(100, 4_000_000)
            analysis = {
                "core": f"/var/lib/coretriage/spool/core.{pid}", "executable": exe,
                "command_line": f"{exe} --config /etc/{exe.rsplit('/', 1)[-1]}.conf", "pid": pid, "uid": 1000,
                "signal": {"number": signo, "name": signal, "code": 1 if signal == "SIGSEGV" else -6,
                           "code_name": "SEGV_MAPERR" if signal == "SIGSEGV" else "SI_TKILL",
                           "fault_address": 0 if signal == "SIGSEGV" else None, "sender_pid": None},
                "threads": [{"number": 1, "lwp": pid, "crashed": True, "frames": frames, "depth": None,
                             "name": None}],
                "modules": [{"path": exe, "start": 0x5600_0000_0000, "end": 0x5600_0010_0000,
                             "build_id": f"{gi:040x}", "symbols": "debug", "found_at": exe},
                            {"path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "start": 0x7f00_0000_0000,
                             "end": 0x7f00_0020_0000, "build_id": "ab" * 20, "symbols": "debug",
                             "found_at": "/usr/lib/x86_64-linux-gnu/libc.so.6"}],
                "libc": "glibc 2.36", "registers": [["rip", "0x5600000010c0"], ["rsp", "0x7ffd5e1c0a10"]],
                "disassembly": [], "abort_message": None, "assertion": None, "recursion": None,
                "context": [], "problems": [], "analyzer_version": 1}
            crashes.append({"id": f"c{crash_no:012x}", "group_id": gid, "crashed_at": t, "ingested_at": t + 5,
                            "executable": exe, "signal": signal, "host": host, "container": container,
                            "image": image, "core_file": None, "exe_file": None, "sysroot": None,
                            "analysis": json.dumps(analysis), "signature": sig_json,
                            "meta": json.dumps({"host": host, "image": image, "container": container})})
    return groups, crashes, functions


def fill(store, rng, n_groups, n_crashes, now) -> list[str]:
    from coretriage.store import crashes, groups

    t0 = time.perf_counter()
    group_rows, crash_rows, functions = make_data(rng, n_groups, n_crashes, now)
    t1 = time.perf_counter()
    with store.engine.begin() as db:
        db.exec_driver_sql("PRAGMA synchronous=OFF")
        db.execute(groups.insert(), group_rows)
        for i in range(0, len(crash_rows), 10_000):
            db.execute(crashes.insert(), crash_rows[i:i + 10_000])
    with store.engine.connect() as db:
        db.exec_driver_sql("ANALYZE")
        db.commit()
    t2 = time.perf_counter()
    print(f"filled {n_crashes:,} crashes in {n_groups:,} groups: generate {t1 - t0:.1f} s, "
          f"insert {t2 - t1:.1f} s")
    return functions


class SqlLog:
    """Every statement SQLAlchemy runs, with its time, while switched on."""

    def __init__(self, engine):
        import sqlalchemy as sa
        self.on, self.entries = False, []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, params, context, executemany):
        conn.info["t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, executemany):
        if self.on:
            self.entries.append(((time.perf_counter() - conn.info["t0"]) * 1000, statement, params))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=5000)
    ap.add_argument("--crashes", type=int, default=100_000)
    ap.add_argument("-n", type=int, default=100, help="requests per kind")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile and EXPLAIN even when the target is met")
    ap.add_argument("--facet-indexes", action="store_true",
                    help="what-if: add covering indexes crashes(group_id, host|image|container) before timing")
    args = ap.parse_args()

    from coretriage.store import Store
    from coretriage.config import load_config
    from webui import create_app
    from coretriage.users import hash_password, new_token, token_hash

    rng = random.Random(args.seed)
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="ct-bench-web-") as tmp:
        config = load_config(Path(tmp) / "data")
        config.data_dir.mkdir(parents=True)
        store = Store(config.database_url)
        functions = fill(store, rng, args.groups, args.crashes, now)
        if args.facet_indexes:
            with store.engine.begin() as db:
                for col in FACET_COLUMNS:
                    db.exec_driver_sql(f"CREATE INDEX ix_bench_group_{col} ON crashes (group_id, {col})")
                db.exec_driver_sql("ANALYZE")
            print("what-if: added covering indexes crashes(group_id, host|image|container)")
        store.close()

        app = create_app({"CORETRIAGE": config, "TESTING": True})
        s = app.extensions["store"]
        s.add_user("bench", hash_password("bench-password"), "viewer")
        token = new_token()
        s.add_token("bench", token_hash(token))
        sql = SqlLog(s.engine)
        client = app.test_client()
        # log in through the form: sessions live in the database (webui/sessions.py)
        login = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        assert client.post("/login", data={"username": "bench", "password": "bench-password",
                                           "csrf_token": csrf}).status_code == 302, "bench login failed"
        api = {"Authorization": f"Bearer {token}"}

        with s.engine.connect() as db:
            largest = db.exec_driver_sql("SELECT id FROM groups ORDER BY count DESC LIMIT 1").scalar()
        words = sorted({part for f in functions for part in f.split("_")} | set(rng.sample(functions, 30)))
        kinds = {
            "/ (last seen)": lambda: ("/", {}),
            "/?sort=count": lambda: ("/?sort=count", {}),
            "/groups/<id>": lambda: (f"/groups/{rng.randint(1, args.groups)}", {}),
            "/?q=<word>": lambda: (f"/?q={rng.choice(words)}", {}),
            "/groups/<largest>": lambda: (f"/groups/{largest}", {}),
            "/api/v1/groups": lambda: ("/api/v1/groups", api),
        }

        def get(path, headers):
            r = client.get(path, headers=headers)
            if r.status_code != 200:
                raise SystemExit(f"GET {path}: {r.status_code} {r.get_data(as_text=True)[:300]}")
            return r

        # sanity: the pages show what was stored
        first = get("/", {}).get_data(as_text=True)
        assert f"{args.groups} match" in first, "group list does not show the total"
        assert len(re.findall(r'href="/groups/\d+"', first)) >= 50

        results: dict[str, list[float]] = {}
        for name, make in kinds.items():
            for _ in range(3):  # warm-up: templates compiled, caches filled
                get(*make())
            times = []
            for _ in range(args.n):
                path, headers = make()
                t0 = time.perf_counter()
                get(path, headers)
                times.append((time.perf_counter() - t0) * 1000)
            results[name] = times

        print(f"\n{args.n} requests each, Flask test client, SQLite, {args.crashes:,} crashes / "
              f"{args.groups:,} groups")
        print(f"{'request':<18} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, times in results.items():
            print(f"{name:<18} {percentile(times, 50):8.1f} {percentile(times, 95):8.1f} {max(times):8.1f}")
        p95 = max(percentile(results[k], 95) for k in ("/ (last seen)", "/?sort=count"))
        ok = p95 < TARGET_MS
        print(f"\nverdict: group list p95 {p95:.0f} ms vs target < {TARGET_MS:.0f} ms: "
              f"{'MET' if ok else 'MISSED'}")

        # where the time goes: the SQL of one request of each kind
        print("\nSQL per request (one request of each kind; statements >= 1 ms):")
        for name, make in kinds.items():
            path, headers = make()
            sql.entries, sql.on = [], True
            t0 = time.perf_counter()
            get(path, headers)
            wall = (time.perf_counter() - t0) * 1000
            sql.on = False
            total_sql = sum(e[0] for e in sql.entries)
            print(f"  {path}: {wall:.1f} ms wall, {len(sql.entries)} statements, {total_sql:.1f} ms in SQL")
            by_stmt = defaultdict(float)
            for ms, stmt, _ in sql.entries:
                by_stmt[" ".join(stmt.split())] += ms
            for stmt, ms in sorted(by_stmt.items(), key=lambda kv: -kv[1]):
                if ms >= 1.0:
                    print(f"    {ms:7.1f} ms  {stmt[:150]}")

        if args.profile or not ok:
            for path in ("/?sort=count", f"/groups/{largest}"):
                print(f"\ncProfile of one GET {path} (top 12 by own time):")
                prof = cProfile.Profile()
                prof.enable()
                get(path, {})
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
                text = out.getvalue()
                print("\n".join(line for line in text[text.index("   ncalls"):].splitlines() if line.strip()))
            print("\nEXPLAIN QUERY PLAN of the group list's statements (sort=count):")
            sql.entries, sql.on = [], True
            get("/?sort=count", {})
            sql.on = False
            seen = set()
            with s.engine.connect() as db:
                for _, stmt, params in sql.entries:
                    if stmt in seen or not stmt.lstrip().upper().startswith("SELECT"):
                        continue
                    seen.add(stmt)
                    plan = db.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params).all()
                    print("  " + " ".join(stmt.split())[:150])
                    for row in plan:
                        print(f"      {row[-1]}")
        s.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
