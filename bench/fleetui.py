"""The web UI at fleet scale: real PostgreSQL, real gunicorn, 20 clients over HTTP.

Run as root: ``.venv/bin/python bench/fleetui.py`` (``make bench-fleet``).

1. It starts a throwaway PostgreSQL 15 (initdb as the postgres user, unix
   socket only, shared_buffers 1 GB; ``--pg-dir DIR`` keeps it and reuses a
   database already loaded there) and loads 1,000,000 crashes in 50,000
   groups with COPY, the crash table's indexes dropped during the load and
   built again after it, then VACUUM ANALYZE; then it counts hosts,
   images, containers and days per group from the crashes, which the store
   does as it stores each one and COPY bypasses. The skew is a fleet's: five
   groups with 100k, 100k, 60k, 40k and 20k crashes, the rest Pareto-spread
   (most groups a handful), 200 hosts, 40 images, 90 days. Each crash has
   an analysis of three threads (~6 KB of JSON) and a collector meta with
   an environment and container labels (~1.5 KB), as real ones do.
2. It serves that database with gunicorn (``--workers``, CPUs + 1 sync
   workers by default: PostgreSQL and the clients share those CPUs, and on
   2 CPUs 3 workers served more pages than 5, with a shorter tail; threads
   lengthen it, as a page renders holding the GIL) from
   ``webui:create_app()``, the data dir given by CORETRIAGE_DATA_DIR and
   the database by its coretriage.toml.
3. 20 client threads (``--clients``) per server, each logged in as a
   viewer through the login form (its own session cookie) on a keep-alive
   ``http.client`` connection, send requests back to back (or ``--think``
   seconds apart on average) for ``--seconds`` per kind of request: the
   group list, a search, a group page (half of them groups from the list's
   first page, the fleet's loudest, half any group), the largest group's
   page, a crash page, and ``/favicon.ico``: a trivial route through the
   same server and hooks, the baseline. It prints p50/p95 per kind and each
   one's ratio to the baseline's, and the verdict against the target:
   group list, search and group page p95 under 200 ms.

``--compare-with DIR`` also times the code of another checkout (e.g. the
commit before the search indexes, ``git archive BASE | tar -x -C DIR``) on a
copy of the same data at that checkout's schema head, served by a gunicorn
of its own. The kinds and the two sides take turns in ``--rounds`` short
rounds, so a machine whose load changes under the bench (other work
sharing its CPUs) weighs on both alike: before and after in one run.
``--explain`` prints EXPLAIN ANALYZE of every statement each page runs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the webui package, not this folder's webui.py
sys.path.append(str(ROOT / "tests" / "system"))  # servicekit, fleetstore: the tests' helpers

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TARGET_MS = 200.0
DAY = 86400
HEAVY = [100_000, 100_000, 60_000, 40_000, 20_000]  # the fleet's loudest bugs
VERBS = ["parse", "read", "write", "flush", "handle", "process", "decode", "encode", "release", "acquire",
         "lookup", "insert", "update", "resolve", "dispatch", "send", "recv", "close", "open", "validate",
         "compress", "hash", "route", "schedule", "commit", "spill", "evict", "probe", "merge", "split"]
NOUNS = ["header", "request", "response", "session", "buffer", "frame", "packet", "row", "index", "cache",
         "config", "token", "stream", "queue", "socket", "table", "entry", "chunk", "record", "message",
         "channel", "pool", "lock", "tuple", "page", "backend", "cursor", "plan", "slot", "shard"]
SIGNALS = [("SIGSEGV", 11, 68), ("SIGABRT", 6, 25), ("SIGBUS", 7, 3), ("SIGFPE", 8, 2), ("SIGILL", 4, 2)]
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
STATES = (["new"] * 70 + ["acknowledged"] * 15 + ["resolved"] * 8 + ["regressed"] * 4 + ["ignored"] * 3)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# -- PostgreSQL ------------------------------------------------------------

@contextlib.contextmanager
def postgres(pg_dir: Path | None):
    """A PostgreSQL server on a unix socket in ``pg_dir`` (a temporary one
    when None); yields (SQLAlchemy URL, whether the cluster is new)."""
    if not (PG_BIN / "postgres").exists():
        raise SystemExit(f"PostgreSQL 15 is not installed in {PG_BIN} (make system-deps installs it)")
    user = pwd.getpwnam("postgres")
    run_as = {"user": user.pw_uid, "group": user.pw_gid, "env": {"PATH": f"{PG_BIN}:/usr/bin:/bin", "LC_ALL": "C"}}
    tmp = None
    if pg_dir is None:
        tmp = tempfile.mkdtemp(prefix="ct-fleet-pg-")
        pg_dir = Path(tmp)
    pg_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pg_dir, 0o755)
    os.chown(pg_dir, user.pw_uid, user.pw_gid)
    data = pg_dir / "data"
    if (data / "postmaster.pid").exists():
        raise SystemExit(f"a PostgreSQL still runs in {data} (or died there): stop it first")
    new = not (data / "PG_VERSION").exists()
    if new:
        subprocess.run([PG_BIN / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                        "--no-sync"], check=True, capture_output=True, timeout=300, **run_as)
    settings = {"listen_addresses": "", "fsync": "off", "wal_level": "minimal", "max_wal_senders": "0", "synchronous_commit": "off", "full_page_writes": "off",
                "shared_buffers": "1GB", "work_mem": "16MB", "maintenance_work_mem": "512MB",
                "max_wal_size": "8GB", "checkpoint_timeout": "30min", "max_connections": "100",
                "effective_cache_size": "4GB", "random_page_cost": "1.1"}
    argv = [PG_BIN / "postgres", "-D", data, "-k", pg_dir]
    for k, v in settings.items():
        argv += ["-c", f"{k}={v}"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(pg_dir / "server.log", "ab"), **run_as)
    try:
        deadline = time.monotonic() + 60
        while not (pg_dir / ".s.PGSQL.5432").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"PostgreSQL did not start: see {pg_dir / 'server.log'}")
            time.sleep(0.05)
        time.sleep(0.2)
        if new:
            subprocess.run([PG_BIN / "createdb", "-h", pg_dir, "-U", "postgres", "coretriage"],
                           check=True, capture_output=True, timeout=60, **run_as)
        yield f"postgresql+psycopg://postgres@/coretriage?host={pg_dir}", new
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: SIGTERM's smart one waits for every client
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# -- the data --------------------------------------------------------------

def group_sizes(rng: random.Random, n_groups: int, n_crashes: int) -> list[int]:
    heavy = [h for h in HEAVY if h * 4 <= n_crashes][: max(0, n_groups // 10)]
    rest_groups = n_groups - len(heavy)
    rest = n_crashes - sum(heavy) - rest_groups  # one crash each, then Pareto-weighted
    weights = [rng.paretovariate(1.1) for _ in range(rest_groups)]
    cap = max(1, n_crashes // 100)  # none of the tail outgrows the heavy ones
    total = sum(weights)
    counts = [1 + min(cap, int(rest * w / total)) for w in weights]
    short = n_crashes - sum(heavy) - sum(counts)
    i = 0
    while short > 0:  # hand what the cap and rounding left out to the tail's biggest, round robin
        j = i % min(500, len(counts))
        counts[j] += 1
        short -= 1
        i += 1
    counts.sort(reverse=True)
    return heavy + counts


def analysis_template(rng, gi: int, exe: str, signal: str, signo: int, program: list[str]) -> str:
    """One group's analysis JSON with @PID@, @LWP2@, @LWP3@ and @CORE@ to fill per crash."""
    top = ["__pthread_kill_implementation", "__pthread_kill_internal", "raise", "abort"] \
        if signal == "SIGABRT" else ["__memmove_avx_unaligned_erms"]
    start = ["__libc_start_call_main", "__libc_start_main_impl", "_start"]

    def frames(names, base):
        return [{"index": i, "pc": base + 0x40 * i, "function": n,
                 "module": LIBC if n in top or n in start or n.startswith(("epoll", "pthread")) else exe,
                 "build_id": f"{gi:040x}", "offset": 0x1000 + 0x40 * i,
                 "file": None if n in top or n in start else f"src/{n.split('_')[-1]}.c",
                 "line": None if n in top or n in start else 10 + 7 * i} for i, n in enumerate(names)]

    crashed = frames(top + program + start, 0x5600_0000_1000)
    idle = frames(["epoll_wait", "event_loop_poll", "worker_main", "start_thread", "clone3"], 0x5600_0000_9000)
    threads = [{"number": 1, "lwp": "@PID@", "crashed": True, "frames": crashed, "depth": None, "name": None},
               {"number": 2, "lwp": "@LWP2@", "crashed": False, "frames": idle, "depth": None, "name": "worker"},
               {"number": 3, "lwp": "@LWP3@", "crashed": False, "frames": idle, "depth": None, "name": "worker"}]
    modules = [{"path": p, "start": 0x7f00_0000_0000 + 0x100_0000 * i, "end": 0x7f00_0000_0000 + 0x100_0000 * i + 0x20_0000,
                "build_id": f"{gi + i:040x}", "symbols": "debug" if i < 2 else "none", "found_at": p}
               for i, p in enumerate([exe, LIBC, "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                                      "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                                      "/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", "/lib64/ld-linux-x86-64.so.2"])]
    regs = [[r, f"0x{rng.getrandbits(48):x}"] for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8",
                                                          "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")]
    disasm = [{"address": 0x5600_0000_10c0 + 4 * i, "text": f"mov    0x{8 * (i + 5):x}(%rdi),%rax",
               "function": program[0], "offset": 0x40 + 4 * i, "is_pc": i == 0} for i in range(-5, 6)]
    analysis = {
        "core": "@CORE@", "executable": exe, "command_line": f"{exe} -f /etc/{exe.rsplit('/', 1)[-1]}.conf",
        "pid": "@PID@", "uid": 1000,
        "signal": {"number": signo, "name": signal, "code": 1 if signal == "SIGSEGV" else -6,
                   "code_name": "SEGV_MAPERR" if signal == "SIGSEGV" else "SI_TKILL",
                   "fault_address": 16 if signal == "SIGSEGV" else None, "sender_pid": None},
        "threads": threads, "modules": modules, "libc": "glibc 2.36", "registers": regs, "disassembly": disasm,
        "abort_message": "free(): double free detected in tcache 2" if signal == "SIGABRT" else None,
        "assertion": None, "recursion": None, "context": [], "problems": [], "analyzer_version": 1,
        "architecture": "x86_64"}
    return json.dumps(analysis).replace('"@PID@"', "@PID@").replace('"@LWP2@"', "@LWP2@").replace('"@LWP3@"', "@LWP3@")


def meta_template(exe: str) -> str:
    environ = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/var/lib/svc",
               "LANG": "C.UTF-8", "TZ": "UTC", "SERVICE_NAME": exe.rsplit("/", 1)[-1],
               "DATABASE_PASSWORD": "********", "API_TOKEN": "********", "GOMAXPROCS": "8",
               "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
               "LOG_LEVEL": "info", "FEATURE_FLAGS": "fast-path,async-flush,compressed-cache"}
    meta = {"pid": "@PID@", "uid": 1000, "gid": 1000, "comm": exe.rsplit("/", 1)[-1][:15],
            "cmdline": [exe, "-f", f"/etc/{exe.rsplit('/', 1)[-1]}.conf"], "environ": environ,
            "host": "@HOST@", "container": "@CONTAINER@", "image": "@IMAGE@",
            "labels": {"com.docker.compose.project": "prod", "com.docker.compose.service": exe.rsplit("/", 1)[-1],
                       "org.opencontainers.image.revision": "4f2a9c1e"},
            "core_kind": "stack", "core_size": 412_160, "crash_time": "@T@", "host_time": "@T@",
            "dump_mode": 1, "rlimit_core": -1, "kernel": "6.1.0-27-amd64", "collector_version": "0.1.0"}
    return json.dumps(meta).replace('"@PID@"', "@PID@").replace('"@T@"', "@T@")


def copy_text(value) -> str:
    """One field of COPY's text format."""
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def load(url: str, rng: random.Random, n_groups: int, n_crashes: int, now: float) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    functions = [f"{v}_{n}" for v in VERBS for n in NOUNS]
    hosts = [f"node-{i:03d}.{['fra1', 'ams2', 'iad3', 'sfo1'][i % 4]}" for i in range(200)]
    images = [f"registry.internal/team{i % 8}/svc-{i:02d}:{1 + i % 5}.{i % 10}.{i % 3}" for i in range(40)]
    executables = ([f"/srv/svc-{i:02d}/bin/svc-{i:02d}" for i in range(40)]
                   + ["/usr/sbin/haproxy", "/usr/lib/postgresql/15/bin/postgres", "/usr/sbin/nginx"])
    sizes = group_sizes(rng, n_groups, n_crashes)
    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'crashes' AND indexname <> 'crashes_pkey'")
        index_defs = cur.fetchall()
        for name, _ in index_defs:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("TRUNCATE crashes, groups")  # in the load's transaction: COPY then writes no WAL
        group_cols = ("id", "signature", "executable", "signal", "count", "first_seen", "last_seen", "quality",
                      "state", "note", "key_frame", "search_text")
        crash_cols = ("id", "group_id", "crashed_at", "ingested_at", "executable", "signal", "host", "container",
                      "image", "core_file", "exe_file", "sysroot", "analysis", "signature", "meta", "rules_version")
        seen_sigs: set[str] = set()
        crash_no = 0
        group_rows, crash_plans = [], []
        for gi, size in enumerate(sizes):
            gid = gi + 1
            exe = executables[(gi * 7) % len(executables)] if gi >= len(HEAVY) else executables[-3 + gi % 3]
            signal, signo = rng.choices([(s[0], s[1]) for s in SIGNALS], weights=[s[2] for s in SIGNALS])[0]
            while True:
                program = rng.sample(functions, 6) + ["main"]
                text = " | ".join(program[:3])
                if text not in seen_sigs:
                    seen_sigs.add(text)
                    break
            # loud bugs crash up to now; the tail's last crash anywhere in 90 days
            span = 90 * DAY if size > 1000 else rng.uniform(0.02, 1.0) * 90 * DAY
            end = now - (rng.random() * 3600 if size > 1000 else rng.random() * (90 * DAY - span))
            names = program + ["__libc_start_call_main", "__libc_start_main_impl", "_start"]
            search_text = " ".join([text, exe, *names])
            g_hosts = rng.sample(hosts, min(len(hosts), max(1, min(size // 50, 120)) if size > 50 else rng.randint(1, 4)))
            g_images = rng.sample(images, rng.randint(1, 3))
            sig_json = json.dumps({"text": text, "frames": program[:3], "skipped": [], "key_frames": [1, 2, 3],
                                   "quality": 1.0})
            crash_plans.append((gid, size, end - span, end, exe, signal, g_hosts, g_images, sig_json,
                                analysis_template(rng, gi, exe, signal, signo, program), meta_template(exe)))
            group_rows.append([gid, text, exe, signal, size, None, None, 1.0, rng.choice(STATES), "",
                               program[0], search_text])
        # times first, so each group's first/last seen are its crashes' own
        times_of = {}
        for plan in crash_plans:
            gid, size, lo, hi = plan[:4]
            times = [hi] + [rng.uniform(lo, hi) for _ in range(size - 1)]
            times_of[gid] = times
            group_rows[gid - 1][5], group_rows[gid - 1][6] = min(times), max(times)
        with cur.copy(f"COPY groups ({', '.join(group_cols)}) FROM STDIN") as copy:
            copy.write("".join("\t".join(copy_text(v) for v in row) + "\n" for row in group_rows))
        t1 = time.perf_counter()
        with cur.copy(f"COPY crashes ({', '.join(crash_cols)}) FROM STDIN") as copy:
            buf = []
            for gid, size, lo, hi, exe, signal, g_hosts, g_images, sig_json, atpl, mtpl in crash_plans:
                exe_t, sig_t, atpl_t, sig_json_t = copy_text(exe), signal, copy_text(atpl), copy_text(sig_json)
                for t in times_of[gid]:
                    crash_no += 1
                    pid = rng.randint(100, 4_000_000)
                    host, image = rng.choice(g_hosts), rng.choice(g_images)
                    container = f"{image.rsplit('/', 1)[-1].split(':')[0]}-{rng.randrange(12)}"
                    analysis = (atpl_t.replace("@PID@", str(pid)).replace("@LWP2@", str(pid + 1))
                                .replace("@LWP3@", str(pid + 2)).replace("@CORE@", "stack.zst"))
                    meta = (copy_text(mtpl).replace("@PID@", str(pid)).replace("@T@", f"{t:.3f}")
                            .replace("@HOST@", host).replace("@CONTAINER@", container).replace("@IMAGE@", image))
                    buf.append(f"c{crash_no:012x}\t{gid}\t{t:.3f}\t{t + 4.2:.3f}\t{exe_t}\t{sig_t}\t{host}\t"
                               f"{container}\t{image}\t\\N\t\\N\t\\N\t{analysis}\t{sig_json_t}\t{meta}\t1-fleet\n")
                    if len(buf) >= 5000:
                        copy.write("".join(buf))
                        buf = []
            if buf:
                copy.write("".join(buf))
        raw.commit()
        t2 = time.perf_counter()
        for _, definition in index_defs:
            cur.execute(definition)
        raw.commit()
        t3 = time.perf_counter()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.exec_driver_sql("VACUUM ANALYZE")  # the visibility map: index-only scans
        size = db.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar()
    engine.dispose()
    print(f"loaded {n_crashes:,} crashes in {n_groups:,} groups (largest {sizes[0]:,}, median "
          f"{sorted(sizes)[len(sizes) // 2]}): groups {t1 - t0:.0f} s, crashes COPY {t2 - t1:.0f} s, "
          f"indexes {t3 - t2:.0f} s, vacuum analyze {time.perf_counter() - t3:.0f} s; database {size}", flush=True)


# -- gunicorn and the clients ----------------------------------------------

@contextlib.contextmanager
def gunicorn(code: Path, data_dir: Path, workers: int, threads: int, log: Path):
    from servicekit import free_port, stop

    port = free_port()
    argv = [str(Path(sys.executable).parent / "gunicorn"), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
            "--chdir", str(code), "--backlog", "256"]
    if threads > 1:
        argv += ["--worker-class", "gthread", "--threads", str(threads)]
    env = dict(os.environ, CORETRIAGE_DATA_DIR=str(data_dir), PYTHONPATH=str(code))
    with open(log, "ab") as out:
        proc = subprocess.Popen([*argv, "webui:create_app()"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=code)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited ({proc.returncode}): see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/login")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not answer in 60 s: see {log}")
            time.sleep(0.2)
        yield port
    finally:
        stop(proc, 30)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Client:
    """One browser: a session cookie from the login form, one keep-alive connection."""

    def __init__(self, port: int):
        self.port, self.cookies, self.conn = port, {}, None

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None  # the server closed a kept-alive connection: once more on a new one
                if attempt == 2:
                    raise
        for value in resp.headers.get_all("Set-Cookie") or ():
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        if resp.will_close:
            self.conn.close()
            self.conn = None
        return resp.status, data

    def login(self, user: str, password: str) -> None:
        from urllib.parse import urlencode

        status, page = self.request("GET", "/login")
        token = CSRF.search(page.decode()).group(1)
        status, _ = self.request("POST", "/login", urlencode({"username": user, "password": password,
                                                              "csrf_token": token}))
        if status != 302:
            raise SystemExit(f"login failed: {status}")


class RequestsFailed(Exception):
    pass


def drive(clients: list[Client], make_path, seconds: float, check, think: float = 0.0) -> list[float]:
    """Every client sends requests for ``seconds``, back to back or after a
    random pause of 0 to 2 x ``think`` seconds; the latencies in ms."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients))

    def run(client: Client, rng: random.Random):
        mine = []
        start.wait()
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            path = make_path(rng)
            t0 = time.perf_counter()
            try:
                status, body = client.request("GET", path)
            except Exception as exc:  # noqa: BLE001 (reported below, the bench fails)
                errors.append(f"GET {path}: {exc}")
                return
            mine.append((time.perf_counter() - t0) * 1000)
            if status != 200 or not check(body):
                errors.append(f"GET {path}: {status} {body[:200]!r}")
                return
            if think:
                time.sleep(rng.uniform(0, 2 * think))
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=run, args=(c, random.Random(i))) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RequestsFailed(f"{len(errors)} failed requests, first: {errors[0]}")
    return times


def kinds_of(sample: dict) -> dict:
    """name -> (a path for a client's rng, a check of the page's body)."""
    words, top, n_groups = sample["words"], sample["top"], sample["groups"]
    largest, crash_ids = sample["largest"], sample["crash_ids"]
    return {
        "group list": (lambda rng: "/" if rng.random() < 0.7 else f"/?sort=count&page={rng.randint(1, 20)}",
                       lambda body: b'href="/groups/' in body),
        "search": (lambda rng: "/?q=" + "+".join(rng.sample(words, 1 if rng.random() < 0.7 else 2)),
                   lambda body: b"match" in body),
        "group page": (lambda rng: f"/groups/{rng.choice(top) if rng.random() < 0.5 else rng.randint(1, n_groups)}",
                       lambda body: b"crashes/c" in body),
        "largest group": (lambda rng: f"/groups/{largest}", lambda body: b"crashes/c" in body),
        "crash page": (lambda rng: f"/crashes/{rng.choice(crash_ids)}", lambda body: b"SIG" in body),
        "static (baseline)": (lambda rng: "/favicon.ico", lambda body: body.startswith(b"<svg")),
    }


def timed_runs(sides: list[tuple[str, Path, Path]], args, sample: dict) -> dict:
    """(label, code, data dir) each served by its own gunicorn; every kind of
    request timed on each side in turn, in ``--rounds`` short rounds, so a
    machine whose load changes under the bench (others share its CPUs)
    weighs on every side alike. Returns label -> kind -> latencies."""
    kinds = kinds_of(sample)
    results = {label: {name: [] for name in kinds} for label, _, _ in sides}
    with contextlib.ExitStack() as stack:
        clients = {}
        for label, code, data_dir in sides:
            port = stack.enter_context(gunicorn(code, data_dir, args.workers, args.threads, data_dir / "gunicorn.log"))
            clients[label] = [Client(port) for _ in range(args.clients)]
            for c in clients[label]:
                c.login("fleetviewer", "fleet-viewer-password")
        try:
            for label, _, _ in sides:
                for make, check in kinds.values():  # warm up every worker's templates and connections
                    drive(clients[label], make, 1.0, check)
            for _ in range(args.rounds):
                for name, (make, check) in kinds.items():
                    for label, _, _ in sides:
                        results[label][name] += drive(clients[label], make, args.seconds / args.rounds, check,
                                                      args.think)
        except RequestsFailed as exc:
            logs = "".join(f"\n{d / 'gunicorn.log'}:\n{(d / 'gunicorn.log').read_text(errors='replace')[-2000:]}"
                           for _, _, d in sides)
            raise SystemExit(f"{exc}{logs}") from None
    print(f"\ngunicorn {args.workers} workers x {args.threads} thread(s) per side, {args.clients} clients "
          + (f"pausing 0-{2 * args.think:g} s between requests" if args.think else "back to back")
          + f", {args.seconds:g} s per kind and side in {args.rounds} rounds")
    for label, _, _ in sides:
        res = results[label]
        base = percentile(res["static (baseline)"], 95)
        print(f"\n{label}")
        print(f"{'request':<18} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p95/base':>9}")
        for name, times in res.items():
            print(f"{name:<18} {len(times):6d} {percentile(times, 50):8.1f} {percentile(times, 95):8.1f} "
                  f"{percentile(times, 95) / base:9.1f}")
        worst = max(percentile(res[k], 95) for k in ("group list", "search", "group page"))
        print(f"verdict: worst p95 of group list, search and group page {worst:.0f} ms vs target < {TARGET_MS:.0f} "
              f"ms: {'MET' if worst < TARGET_MS else 'MISSED'}", flush=True)
    return results


def explain(data_dir: Path, sample: dict) -> None:
    """Every statement one request of each kind runs, with PostgreSQL's
    EXPLAIN ANALYZE of it: its time and the plan's scans."""
    import sqlalchemy as sa

    from webui import create_app

    app = create_app({"DATA_DIR": str(data_dir), "TESTING": True})
    engine = app.extensions["store"].engine
    seen: list[tuple[str, object]] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: seen.append((stmt, params)))
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": "fleetviewer", "password": "fleet-viewer-password",
                                "csrf_token": CSRF.search(page).group(1)})
    paths = {"group list": "/", "group list by count, page 5": "/?sort=count&page=5",
             "search": "/?q=header", "search, two words": "/?q=parse+row",
             "largest group": f"/groups/{sample['largest']}", "a small group": f"/groups/{sample['groups']}",
             "crash page": f"/crashes/{sample['crash_ids'][0]}"}
    print("\nEXPLAIN ANALYZE of every statement per page (the session's and user's own lookups left out)")
    for name, path in paths.items():
        seen.clear()
        t0 = time.perf_counter()
        status = client.get(path).status_code
        wall = (time.perf_counter() - t0) * 1000
        statements = [(st, p) for st, p in seen if st.lstrip().upper().startswith(("SELECT", "WITH"))
                      and "web_sessions" not in st and "FROM users" not in st]
        print(f"  {name}: GET {path} -> {status}, {wall:.0f} ms in-process, {len(statements)} statements")
        with engine.connect() as db:
            for stmt, params in statements:
                plan = [r[0] for r in db.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)]
                total = next((line for line in plan if line.startswith("Execution Time")), "")
                scans = sorted({m.group(0) for line in plan for m in [re.search(
                    r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan)( Backward)?"
                    r"( using \w+)? on \w+", line)] if m})
                print(f"    {total.replace('Execution Time: ', ''):>12}  {' '.join(stmt.split())[:90]}")
                print(f"    {'':>12}  {'; '.join(scans)}")
    app.extensions["store"].close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=50_000)
    ap.add_argument("--crashes", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1,
                    help="gunicorn workers (CPUs + 1: PostgreSQL runs on the same CPUs)")
    ap.add_argument("--threads", type=int, default=1, help="threads per worker (gthread when > 1)")
    ap.add_argument("--seconds", type=float, default=20.0, help="per kind of request (and per side)")
    ap.add_argument("--rounds", type=int, default=5, help="the seconds of each kind and side split in rounds")
    ap.add_argument("--think", type=float, default=0.0,
                    help="mean pause of each client between requests (0: back to back, the worst case)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg-dir", type=Path, help="keep the PostgreSQL cluster here; reuse one loaded there")
    ap.add_argument("--explain", action="store_true",
                    help="EXPLAIN ANALYZE every statement of each page (in-process) before timing")
    ap.add_argument("--compare-with", type=Path, metavar="DIR",
                    help="first time another checkout's code on its schema head, then upgrade and time this one")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: PostgreSQL runs as the postgres user")
    if args.compare_with and not (args.compare_with / "webui" / "__init__.py").exists():
        raise SystemExit(f"{args.compare_with} is not a coretriage checkout")

    import sqlalchemy as sa

    from coretriage import migrations
    from coretriage.users import hash_password

    rng = random.Random(args.seed)
    now = time.time()
    with postgres(args.pg_dir) as (url, new), tempfile.TemporaryDirectory(prefix="ct-fleet-data-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        (data_dir / "coretriage.toml").write_text(f'database_url = "{url}"\n')
        engine = sa.create_engine(url)
        with engine.connect() as db:
            loaded = migrations.revision_of(db) is not None and db.exec_driver_sql(
                "SELECT count(*) FROM crashes").scalar() == args.crashes
        if not loaded:
            base_head = None
            if args.compare_with:
                base_head = _head_of(args.compare_with)
            migrations.upgrade(url, base_head or "head")
            load(url, rng, args.groups, args.crashes, now)
        else:
            print(f"reusing the {args.crashes:,} crashes loaded in {args.pg_dir}", flush=True)
        engine.dispose()
        _fill_counts(url)
        before_url = _before_copy(url, _head_of(args.compare_with)) if args.compare_with else None
        if migrations.current(url) != migrations.HEAD:
            before, after = migrations.upgrade(url)
            print(f"upgraded the database from {before} to {after}", flush=True)
        if before_url:
            _fill_counts(before_url)
        for u in filter(None, (url, before_url)):
            e = sa.create_engine(u, poolclass=sa.NullPool)
            with e.begin() as db:
                db.exec_driver_sql("DELETE FROM web_sessions")
                db.exec_driver_sql("DELETE FROM users WHERE name = 'fleetviewer'")
                db.execute(sa.text("INSERT INTO users (name, password_hash, role, created) VALUES "
                                   "('fleetviewer', :h, 'viewer', :t)"),
                           {"h": hash_password("fleet-viewer-password"), "t": now})
            e.dispose()
        with engine.connect() as db:
            top = list(db.exec_driver_sql("SELECT id FROM groups ORDER BY last_seen DESC, id DESC LIMIT 50").scalars())
            largest = db.exec_driver_sql("SELECT id FROM groups ORDER BY count DESC LIMIT 1").scalar()
            crash_ids = list(db.exec_driver_sql("SELECT id FROM crashes TABLESAMPLE SYSTEM (1) LIMIT 2000").scalars())
            n_groups = db.exec_driver_sql("SELECT max(id) FROM groups").scalar()
        engine.dispose()
        functions = [f"{v}_{n}" for v in VERBS for n in NOUNS]
        # whole words, parts of names, executables' names, and one that matches nothing
        words = (VERBS + NOUNS + rng.sample(functions, 40) + ["haproxy", "postgres", "svc-07", "nginx", "ars_lo",
                                                                "nomatchatall"])
        sample = {"words": words, "top": top, "largest": largest, "crash_ids": crash_ids, "groups": n_groups}
        if args.explain:
            explain(data_dir, sample)
        sides = [(f"this checkout at schema {migrations.current(url)}", ROOT, data_dir)]
        if before_url:
            before_dir = Path(tmp) / "before"
            before_dir.mkdir(mode=0o700)
            (before_dir / "coretriage.toml").write_text(f'database_url = "{before_url}"\n')
            sides.insert(0, (f"before: {args.compare_with} at schema {migrations.current(before_url)}",
                             args.compare_with, before_dir))
        timed_runs(sides, args, sample)
    return 0


def _fill_counts(url: str) -> None:
    """Hosts, images, containers and crashes per day per group, counted
    from the crashes once: COPY bypasses the store, which keeps them as it
    stores each crash (a schema without those tables is left alone)."""
    import sqlalchemy as sa

    from coretriage.store import _rebuild_counts

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as db:
            if not sa.inspect(db).has_table("group_facets") or db.exec_driver_sql(
                    "SELECT EXISTS (SELECT 1 FROM group_facets)").scalar():
                return
            t0 = time.perf_counter()
            _rebuild_counts(db)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.exec_driver_sql("VACUUM ANALYZE group_facets")
            db.exec_driver_sql("VACUUM ANALYZE group_days")
        print(f"counted hosts, images, containers and days per group in {sa.make_url(url).database} in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        engine.dispose()


def _before_copy(url: str, revision: str) -> str:
    """A copy of the loaded database at ``revision`` (the other checkout's
    head), made once: ``CREATE DATABASE ... TEMPLATE``, a file copy."""
    import sqlalchemy as sa

    from coretriage import migrations

    name = "coretriage_before"
    before_url = sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.NullPool)
    with admin.connect() as db:
        exists = db.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
    if not exists:
        if migrations.current(url) != revision:
            _downgrade(url, revision)
        t0 = time.perf_counter()
        with admin.connect() as db:
            db.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE coretriage')
        print(f"copied the database for the other checkout in {time.perf_counter() - t0:.0f} s", flush=True)
    admin.dispose()
    if migrations.current(before_url) != revision:
        _downgrade(before_url, revision)
    return before_url


def _downgrade(url: str, revision: str) -> None:
    import sqlalchemy as sa
    from fleetstore import migrate

    migrate(url, revision)
    print(f"downgraded {sa.make_url(url).database} to {revision} for the other checkout", flush=True)


def _head_of(checkout: Path) -> str:
    """The newest schema revision another checkout knows (its migrations.REVISIONS)."""
    text = (checkout / "coretriage" / "migrations" / "__init__.py").read_text()
    found = re.search(r"REVISIONS = \(([^)]*)\)", text)
    return re.findall(r'"(\d+)"', found.group(1))[-1]


if __name__ == "__main__":
    sys.exit(main())
