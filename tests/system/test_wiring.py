"""One wiring for every entry point: the same bundle from a real container
crash, analyzed in-process (the collector with no broker) and by a real
Celery worker on a real Redis, gives the same record field for field, the
container's name and image from Docker included. Before the wiring, the
worker path lost the Docker enrichment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


from collector.bundle import Bundle
from coretriage.config import load_config
from coretriage.store import Store
from coretriage.wiring import Wiring
from dockerhost import IMAGE, collector_installed, dockerd, haproxy_container, haproxy_image  # noqa: F401
from recipes import haproxy
from redisserver import start_redis, start_worker
from servicekit import free_port, stop
from waiting import wait_for

WAIT = 180.0


def finished_bundle(spool: Path) -> Bundle | None:
    found = [Bundle(d) for d in spool.iterdir() if d.is_dir()] if spool.is_dir() else []
    finished = [b for b in found if b.is_finished()]
    return finished[0] if len(finished) == 1 else None


def test_a_container_crash_gives_the_same_record_in_process_and_through_celery(
        dockerd, haproxy_image, collector_installed, tmp_path):  # noqa: F811 (fixtures)
    data = collector_installed  # the kernel pipes every core to the handler; no daemon runs
    base = load_config(data)
    here = dataclasses.replace(base, database_url=f"sqlite:///{tmp_path / 'here.db'}")
    queued_db = f"sqlite:///{tmp_path / 'queued.db'}"
    port = free_port()
    redis = start_redis(port)
    broker = f"redis://127.0.0.1:{port}/0"
    queued = dataclasses.replace(base, database_url=queued_db, broker_url=broker)
    worker = start_worker(data, broker_url=broker, database_url=queued_db)
    try:
        # the container must still exist while both analyses ask Docker about it
        with haproxy_container(IMAGE, tmp_path / "ct", labels={"com.docker.compose.service": "edge"}) as ct:
            ct.wait_listening()
            haproxy.send_request(ct.port, haproxy.URI)
            assert ct.wait_exit(timeout=haproxy.DEATH_TIMEOUT) == 128 + 11, ct.logs()
            bundle = wait_for(lambda: finished_bundle(base.spool_dir), "the handler's bundle", WAIT)
            core = bundle.core.read_bytes()

            in_process = Wiring(here).process_bundle(bundle.dir).crash

            # the same bundle again, as the collector would have found it
            bundle.core.write_bytes(core)
            os.unlink(bundle.dir / Bundle.DONE)
            Wiring(queued).submit(log=lambda line: None)(bundle.dir)
            queued_store = Store(queued_db)
            try:
                wait_for(lambda: queued_store.crash_ids(), "the Celery worker to store the crash", WAIT)
                through_celery = queued_store.crash(in_process.id)
            finally:
                queued_store.close()
            container_name = ct.name
    finally:
        stop(worker, timeout=20)
        stop(redis)

    assert in_process.container == container_name and in_process.image == IMAGE
    assert in_process.meta["compose_service"] == "edge"
    a, b = dataclasses.asdict(in_process), dataclasses.asdict(through_celery)
    for timing in ("ingested_at", "analysis_seconds"):  # when each store took it, how long each gdb took
        assert a.pop(timing) > 0 and b.pop(timing) > 0
    differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not differ, differ
