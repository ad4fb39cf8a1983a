"""Exactly once, fast: real Redis, real `coretriage worker` processes, real
sample cores, on SQLite and on PostgreSQL. Every test counts the crash
records exactly, after the queue has gone quiet (no message waiting, none
unacknowledged), so a late duplicate would be seen.

- a worker killed with kill -9 (its whole process group) while gdb analyzes
  the core: the crash is recorded once, within 60 s, by a second worker
  that was running, or by one started after the kill;
- the workers down for longer than the collector's retry_after, which
  re-submits every bundle several times: each crash recorded once;
- Redis stopped for 20 s while crashes arrive: the collector backs off once
  (one log line, a handful of quick hand-off attempts, not one stall per
  bundle) and every crash is recorded once after Redis returns;
- the same bundle delivered to two workers at once, and a long analysis
  handed out again by Redis while it still runs: one record;
- a bundle processed again after its crash was stored and its core moved
  (a worker killed before it marked the bundle done), and a bundle claimed
  in the database by a worker elsewhere: no second record, no analysis.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from collector import spool
from collector.bundle import Bundle
from collector.watch import Collector, HandoffError, import_dump
from coretriage.claims import BundleBusy
from coretriage.config import load_config
from coretriage.pipeline import process_bundle
from coretriage.store import Store, crashes
from coretriage.tasks import HANDOFF_TIMEOUT, hand_off
from pgserver import create_database, postgres_server
from redisserver import start_redis, start_worker
from servicekit import free_port, stop
from proctree import descendants, gdb_of
from waiting import wait_for

QUEUE = "coretriage.central-test"  # one queue name for submitter and workers, as a central deployment sets
DURING = ("segv", "assert_queue", "assert_balance", "double_free", "recursion")


@pytest.fixture(scope="module")
def pg_server():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'coretriage.db'}"
    return create_database(request.getfixturevalue("pg_server"), f"ct_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def redis_port():
    port = free_port()
    proc = start_redis(port)
    box = {"proc": proc}
    yield port, box
    if box["proc"] is not None:
        stop(box["proc"])


@pytest.fixture
def setup(tmp_path, database_url, redis_port):
    """(config, store, workers): the configuration every process shares, its
    store, and a function starting a worker (stopped at the end)."""
    port, _ = redis_port
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = dataclasses.replace(load_config(data), database_url=database_url,
                                 broker_url=f"redis://127.0.0.1:{port}/0", queue_name=QUEUE)
    store = Store(database_url)  # the schema, before any worker opens it
    started: list[tuple[subprocess.Popen, Path]] = []

    def worker(name: str):
        log = tmp_path / f"worker-{name}.log"
        proc = start_worker(data, log=log, session=True, broker_url=config.broker_url,
                            database_url=database_url, queue_name=QUEUE)
        started.append((proc, log))
        wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, f"worker {name} to start", 120)
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        return proc, log

    yield config, store, worker
    for proc, _ in started:
        proc.terminate()  # a warm shutdown; its pool and alert sender follow it
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    store.close()


# -- helpers -------------------------------------------------------------------

def bundle_of(samples, tmp_path: Path, config, name: str, variant: int = 0) -> Path:
    """A real sample core as a finished spool bundle (the way a dump
    directory's core becomes one)."""
    copy = tmp_path / f"core-{name}-{variant}-{uuid.uuid4().hex[:6]}"
    copy.write_bytes(samples(name, variant).core.read_bytes())
    return import_dump(copy, config.spool_dir)


def crash_rows(store) -> list[tuple]:
    import sqlalchemy as sa

    with store.engine.connect() as db:
        return [tuple(r) for r in db.execute(sa.select(crashes.c.id, crashes.c.bundle_id, crashes.c.core_file,
                                                       crashes.c.group_id))]


def redis_client(config):
    import redis

    return redis.Redis.from_url(config.broker_url)


def quiet(config, for_seconds: float = 3.0, timeout: float = 120.0) -> None:
    """Wait until no message waits in the queue and none is unacknowledged,
    for ``for_seconds`` in a row: nothing more can be recorded after that."""
    client = redis_client(config)
    since = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = client.llen(QUEUE) + client.hlen("unacked")
        if busy:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= for_seconds:
            return
        time.sleep(0.2)
    pytest.fail(f"the queue did not go quiet in {timeout:.0f} s")


def running_collector(config, submit, **kw) -> tuple[Collector, threading.Event, threading.Thread]:
    stop_event = threading.Event()
    collector = Collector(config.spool_dir, submit, stable=0.3, rescan=0.5, **kw)
    thread = threading.Thread(target=collector.run, args=(stop_event,), daemon=True)
    thread.start()
    return collector, stop_event, thread


# -- the tests -----------------------------------------------------------------

def test_a_worker_killed_mid_analysis_has_its_task_delivered_again_within_60_s_and_recorded_once(setup, samples, tmp_path):
    config, store, worker = setup
    first, _ = worker("a")
    bundle = bundle_of(samples, tmp_path, config, "thread")
    hand_off(config)(bundle.name)

    gdb = wait_for(lambda: gdb_of(first.pid), "worker a's gdb on the core", 60)
    os.kill(gdb, signal.SIGSTOP)  # the analysis is now as slow as we like: gdb is stopped mid-way
    second, log_b = worker("b")
    assert crash_rows(store) == [] and not spool.is_done(bundle)
    os.killpg(first.pid, signal.SIGKILL)  # the worker, its pool, its alert sender: all of it at once
    killed = time.monotonic()
    first.wait()

    # delivered again within 60 s (what a worker's death may cost); the analysis after it
    # takes what the machine gives it
    wait_for(lambda: b"received" in log_b.read_bytes(), "the task delivered to worker b", 60)
    delivered = time.monotonic() - killed
    wait_for(lambda: crash_rows(store), "the crash recorded by worker b", 180)
    took = time.monotonic() - killed
    assert delivered < 60, delivered
    assert second.poll() is None
    quiet(config)
    rows = crash_rows(store)
    assert len(rows) == 1, rows
    crash_id, bundle_id, core_file, _ = rows[0]
    assert bundle_id == bundle.name and core_file is not None  # the core, not a core-less second record
    assert (config.data_dir / core_file).is_file() and spool.is_done(bundle)
    assert store.crash(crash_id).signature["text"] == samples("thread").expected_signature
    assert gdb_of(second.pid) is None and not Path(f"/proc/{gdb}").exists()  # the stopped gdb died with worker a
    print(f"delivered again {delivered:.1f} s after the kill, recorded after {took:.1f} s")


def test_a_killed_worker_s_task_goes_to_a_worker_started_after_it_within_60_s(setup, samples, tmp_path):
    """No worker survives: the one started after the kill takes the message back."""
    config, store, worker = setup
    first, _ = worker("a")
    bundle = bundle_of(samples, tmp_path, config, "double_free")
    hand_off(config)(bundle.name)
    gdb = wait_for(lambda: gdb_of(first.pid), "worker a's gdb on the core", 60)
    os.kill(gdb, signal.SIGSTOP)
    os.killpg(first.pid, signal.SIGKILL)
    killed = time.monotonic()
    first.wait()
    worker("b")
    wait_for(lambda: crash_rows(store), "the crash recorded by the restarted worker", 180)
    took = time.monotonic() - killed
    quiet(config)
    rows = crash_rows(store)
    assert len(rows) == 1 and rows[0][1] == bundle.name and rows[0][2] is not None, rows
    print(f"recorded {took:.1f} s after the kill, by a worker started after it")


def test_workers_down_longer_than_retry_after_still_record_each_crash_once(setup, samples, tmp_path):
    config, store, worker = setup
    collector, stop_event, thread = running_collector(config, counted_submit(config), retry_after=2.0)
    try:
        bundles = [bundle_of(samples, tmp_path, config, "segv", v) for v in range(3)]
        client = redis_client(config)
        # every bundle handed over again and again while no worker runs
        wait_for(lambda: client.llen(QUEUE) >= 3 * len(bundles), "three hand-offs of each bundle", 60)
        worker("a")
        wait_for(lambda: len(crash_rows(store)) >= 3, "the three crashes", 120)
        wait_for(lambda: all(spool.is_done(b) for b in bundles), "every bundle done", 60)
    finally:
        stop_event.set()
        thread.join(timeout=10)
    quiet(config)
    rows = crash_rows(store)
    assert len(rows) == 3, rows
    assert sorted(r[1] for r in rows) == sorted(b.name for b in bundles)
    assert all(r[2] is not None for r in rows)
    assert sum(g.count for g in store.groups()) == 3


def counted_submit(config, attempts: list | None = None):
    """The collector's real hand-off, each attempt noted (start, seconds, failed)."""
    send = hand_off(config)

    def submit(bundle: Path) -> None:
        began = time.monotonic()
        try:
            send(bundle.name)
        except HandoffError:
            if attempts is not None:
                attempts.append((began, time.monotonic() - began, True))
            raise
        if attempts is not None:
            attempts.append((began, time.monotonic() - began, False))
    return submit


def test_redis_down_for_20_s_costs_one_back_off_and_every_crash_is_recorded_once(
        setup, redis_port, samples, tmp_path, caplog):
    config, store, worker = setup
    port, box = redis_port
    worker("a")
    attempts: list[tuple[float, float, bool]] = []
    caplog.set_level(logging.INFO, logger="coretriage.collector")
    collector, stop_event, thread = running_collector(config, counted_submit(config, attempts),
                                                      retry_after=30.0, backoff_max=8.0)
    try:
        before = bundle_of(samples, tmp_path, config, "double_free")
        wait_for(lambda: crash_rows(store), "the crash before the outage", 60)

        stop(box["proc"])  # the broker dies; ten crashes arrive while it is away
        box["proc"] = None
        down = time.monotonic()
        during = []
        for i in range(10):  # ten different cores: five programs, two runs each
            during.append(bundle_of(samples, tmp_path, config, DURING[i % 5], i // 5 + 1))
            time.sleep(1.5)
        wait_for(lambda: collector.backing_off, "the collector backing off", 10)
        time.sleep(max(0.0, 20 - (time.monotonic() - down)))
        failed = [a for a in attempts if a[2]]
        box["proc"] = start_redis(port)
        up = time.monotonic()

        wait_for(lambda: len(crash_rows(store)) >= 11, "every crash after Redis came back", 180)
        wait_for(lambda: all(spool.is_done(b) for b in during), "every bundle done", 60)
    finally:
        stop_event.set()
        thread.join(timeout=10)
    quiet(config)
    rows = crash_rows(store)
    assert len(rows) == 11, rows
    assert sorted(r[1] for r in rows) == sorted(b.name for b in [before, *during])

    # one back-off, not one stall per bundle: attempts by the clock, not by the bundles: the
    # back-off's 1, 2 and 4 s, then one every 8 s (ten bundles over 20 s: at most 6; a loaded
    # machine that takes longer to crash the ten programs keeps the outage longer)
    assert 1 <= len(failed) <= 4 + (up - down) / 8, (len(failed), up - down, failed)
    # each gives up within the hand-off's timeout (a stall per bundle was ~6 s); 2 s of it for a loaded machine
    assert all(seconds < HANDOFF_TIMEOUT + 2 for _, seconds, _ in failed), failed
    outage = [r for r in caplog.records if r.name == "coretriage.collector" and "hand-off failed" in r.getMessage()]
    back = [r for r in caplog.records if r.name == "coretriage.collector" and "works again" in r.getMessage()]
    assert len(outage) == 1 and len(back) == 1, [r.getMessage() for r in caplog.records]
    resumed = min(a[0] for a in attempts if not a[2] and a[0] > up)
    assert resumed - up <= 8 + 3  # at most one capped back-off after Redis is back
    print(f"{len(failed)} failed hand-offs for 10 bundles over {up - down:.0f} s; "
          f"handing over again {resumed - up:.1f} s after Redis came back")


def test_the_same_bundle_given_to_two_workers_at_once_is_recorded_once(setup, samples, tmp_path):
    config, store, worker = setup
    a, log_a = worker("a")
    b, log_b = worker("b")
    bundle = bundle_of(samples, tmp_path, config, "recursion")
    send = hand_off(config)
    send(bundle.name)
    send(bundle.name)
    # hold the first analysis so that the second delivery meets it mid-way
    gdb = wait_for(lambda: gdb_of(a.pid) or gdb_of(b.pid), "a gdb on the core", 60)
    os.kill(gdb, signal.SIGSTOP)
    client = redis_client(config)
    wait_for(lambda: b"retry: Retry in" in log_a.read_bytes() + log_b.read_bytes(),
             "the other worker to find the bundle held (and look again later)", 30)
    os.kill(gdb, signal.SIGCONT)
    wait_for(lambda: crash_rows(store), "the crash", 120)
    quiet(config)
    rows = crash_rows(store)
    assert len(rows) == 1 and rows[0][1] == bundle.name and rows[0][2] is not None, rows
    assert client.llen(QUEUE) == 0


def test_a_long_analysis_handed_out_again_while_it_runs_is_recorded_once(setup, samples, tmp_path):
    """Redis gives a message unacknowledged for longer than its visibility
    timeout to another worker, though its analysis still runs: that worker
    finds the bundle held and looks again later."""
    from coretriage.tasks import VISIBILITY_TIMEOUT

    config, store, worker = setup
    a, log_a = worker("a")
    b, log_b = worker("b")
    bundle = bundle_of(samples, tmp_path, config, "assert_balance")
    hand_off(config)(bundle.name)
    gdb = wait_for(lambda: gdb_of(a.pid) or gdb_of(b.pid), "a gdb on the core", 60)
    runner, other = (log_a, log_b) if gdb in descendants(a.pid) else (log_b, log_a)
    os.kill(gdb, signal.SIGSTOP)  # an analysis longer than the visibility timeout
    wait_for(lambda: b"received" in other.read_bytes(), "the message handed out again", VISIBILITY_TIMEOUT + 30)
    wait_for(lambda: b"retry: Retry in" in other.read_bytes() + runner.read_bytes(),
             "the second delivery to find the bundle held", 30)
    assert crash_rows(store) == []
    os.kill(gdb, signal.SIGCONT)
    wait_for(lambda: crash_rows(store), "the crash", 120)
    quiet(config)
    rows = crash_rows(store)
    assert len(rows) == 1 and rows[0][1] == bundle.name and rows[0][2] is not None, rows


# -- without workers: the store's side of it, on both databases ----------------------

@pytest.fixture
def local(tmp_path, database_url):
    data = tmp_path / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    config = dataclasses.replace(load_config(data), database_url=database_url)
    store = Store(database_url)
    yield config, store
    store.close()


def test_a_bundle_stored_before_is_never_stored_again_even_after_its_core_moved(local, samples, tmp_path):
    config, store = local
    bundle = bundle_of(samples, tmp_path, config, "segv")
    first = process_bundle(config, store, bundle)
    assert first.new and not Bundle(bundle).core.exists()  # the core moved to the store
    os.unlink(bundle / Bundle.DONE)  # as if the worker died between storing and marking it done
    again = process_bundle(config, store, bundle)
    assert again.crash.id == first.crash.id and not again.new
    assert spool.is_done(bundle)
    assert len(crash_rows(store)) == 1 and store.groups()[0].count == 1
    assert process_bundle(config, store, bundle).crash.id == first.crash.id  # done: a no-op
    assert len(crash_rows(store)) == 1


def test_a_bundle_claimed_by_a_worker_elsewhere_is_left_to_it_until_its_claim_runs_out(local, samples, tmp_path):
    config, store = local
    bundle = bundle_of(samples, tmp_path, config, "segv")
    # a worker on another machine; its lease long enough that a loaded machine gets the two
    # refusals below in before it runs out
    claimed, lease = time.time(), 5.0
    assert store.claim_bundle(bundle.name, "elsewhere:1:ab", lease=lease, now=claimed)
    with pytest.raises(BundleBusy, match="claimed by another worker"):
        process_bundle(config, store, bundle)
    assert crash_rows(store) == [] and not spool.is_done(bundle)
    assert not store.claim_bundle(bundle.name, "here:2:cd", lease=30)
    time.sleep(max(0.0, claimed + lease + 0.1 - time.time()))  # it died: its claim runs out
    done = process_bundle(config, store, bundle)
    assert done.new and len(crash_rows(store)) == 1
    assert store.renew_claim(bundle.name, "elsewhere:1:ab", 30) is False  # released and not its own any more


def test_a_bundle_locked_by_another_process_here_is_busy(local, samples, tmp_path):
    config, store = local
    bundle = bundle_of(samples, tmp_path, config, "segv")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), str(bundle)],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(BundleBusy, match="being analyzed by another process"):
            process_bundle(config, store, bundle)
    finally:
        holder.kill()  # the lock dies with its holder
        holder.wait()
    assert process_bundle(config, store, bundle).new
    assert len(crash_rows(store)) == 1
