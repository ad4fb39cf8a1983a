"""collector/watch.py, the collector daemon, for real: cores from a dump directory and bundles in
the spool reach the store, directly or through Celery on a real Redis, and a
dead broker loses nothing."""

import os
import threading
import time

import pytest

import crashkit
from coretriage.store import Store
from collector import spool
from collector.bundle import Bundle
from collector.watch import Collector, import_dump
from coretriage.wiring import Wiring
from waiting import wait_for
from redisserver import start_redis, start_worker
from servicekit import free_port, stop


@pytest.fixture
def running(config, store):
    """Start a Collector in a thread; yields a function taking submit."""
    threads = []

    def start(submit, dump_dirs=(), **kw):
        stop_event = threading.Event()
        c = Collector(config.spool_dir, submit, dump_dirs, stable=0.3, rescan=0.5, **kw)
        t = threading.Thread(target=c.run, args=(stop_event,), daemon=True)
        t.start()
        threads.append((stop_event, t))
        return c

    yield start
    for stop_event, t in threads:
        stop_event.set()
        t.join(timeout=10)


def groups(store):
    return store.groups()


def test_dump_directory_core_is_taken_when_complete(config, store, samples, running, tmp_path):
    dump = tmp_path / "dumps"
    dump.mkdir()
    running(Wiring(config).submit(), dump_dirs=(dump,))
    exe = samples("segv").exe
    crashkit.crash([str(exe), "from the dump dir"], dump)  # the kernel writes core.<pid> here
    wait_for(lambda: groups(store), what="the crash in the store")
    g = groups(store)[0]
    assert g.signature == "strlen | header_length | parse_request | main" and g.count == 1
    assert list(dump.iterdir()) == []  # taken into the spool
    bundles = list(spool.finished_bundles(config.spool_dir, include_done=True))
    assert len(bundles) == 1 and spool.is_done(bundles[0])
    assert not Bundle(bundles[0]).core.exists()  # stored once, in the store, not twice
    assert (config.data_dir / store.crashes_of(g.id)[0].core_file).is_file()


def test_bundles_that_arrived_while_down_are_picked_up(config, store, samples, running, tmp_path):
    for v in range(3):  # the collector is not running yet
        s = samples("segv", v)
        copy = tmp_path / f"core-{v}"
        copy.write_bytes(s.core.read_bytes())
        import_dump(copy, config.spool_dir)
    assert groups(store) == []
    running(Wiring(config).submit())
    wait_for(lambda: groups(store) and groups(store)[0].count == 3, what="three crashes")


def test_queue_through_real_redis_and_a_dead_broker(config, samples, running, tmp_path):
    port = free_port()
    redis = start_redis(port)
    broker = f"redis://127.0.0.1:{port}/0"
    worker = start_worker(config.data_dir, broker_url=broker)
    try:
        import dataclasses
        qconfig = dataclasses.replace(config, broker_url=broker)
        store = Store(config.database_url)
        running(Wiring(qconfig).submit())
        first = tmp_path / "core-a"
        first.write_bytes(samples("double_free").core.read_bytes())
        import_dump(first, config.spool_dir)
        wait_for(lambda: store.groups(), what="the worker to store the crash")
        assert store.groups()[0].signature == samples("double_free").expected_signature

        stop(redis)  # the broker dies; a crash arrives meanwhile
        second = tmp_path / "core-b"
        second.write_bytes(samples("assert_queue").core.read_bytes())
        bundle = import_dump(second, config.spool_dir)
        time.sleep(2)
        assert not spool.is_done(bundle) and len(store.groups()) == 1  # kept, not lost
        redis = start_redis(port)  # back: the next scan hands it over
        wait_for(lambda: len(store.groups()) == 2, timeout=120, what="the crash after the broker came back")
        # the worker marks the bundle done just after it stores the crash
        wait_for(lambda: spool.is_done(bundle), timeout=30, what="the bundle marked done")
        assert spool.is_done(bundle)
    finally:
        stop(worker, timeout=20)
        stop(redis)


def test_evicted_bundle_still_counts(config, store, samples, running, tmp_path):

    from collector.retention import make_room

    copy = tmp_path / "core-old"
    copy.write_bytes(samples("segv").core.read_bytes())
    old = import_dump(copy, config.spool_dir)
    fd = os.open(config.spool_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert make_room(fd, max_use=0, min_free=0, keep="") == [old.name]
    finally:
        os.close(fd)
    running(Wiring(config).submit())
    wait_for(lambda: store.groups(), what="the evicted crash in the store")
    crash = store.crashes_of(store.groups()[0].id)[0]
    assert crash.analysis["problems"] == [{"code": "core_not_kept",
                                           "message": "core not kept: evicted to make room in the spool"}]
    assert crash.core_file is None
