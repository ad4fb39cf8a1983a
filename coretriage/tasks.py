"""Celery: the analysis of a spool bundle as a task.

Only the bundle id travels through Redis; the bundle on disk is the truth,
and the collector re-submits any bundle not marked done, so a lost message
costs a delay, never a crash. Each host's collector sends to that host's
queue because the spool is local; workers on the host consume it and write
to the shared database. Tasks are idempotent (crash ids come from the core's
bytes), so late acknowledgement is safe: a worker killed mid-task leaves the
message to be delivered again.
"""

from __future__ import annotations

import functools
import socket

from celery import Celery, shared_task


def host_queue(hostname: str | None = None) -> str:
    return f"coretriage.{hostname or socket.gethostname()}"


def make_celery(config) -> Celery:
    app = Celery("coretriage", broker=config.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one gdb per worker process at a time
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_default_queue=host_queue(),
    )
    app.conf.coretriage_data_dir = str(config.data_dir)
    return app


@functools.lru_cache(maxsize=4)
def _wiring(data_dir: str):
    from coretriage.wiring import Wiring

    return Wiring.load(data_dir)


@shared_task(name="coretriage.analyze_bundle", bind=True, acks_late=True, max_retries=3,
             default_retry_delay=30)
def analyze_bundle(self, bundle_id: str) -> dict:
    from collector.bundle import is_bundle_id

    if not is_bundle_id(bundle_id):  # ids only: never a path from the queue
        raise ValueError(f"not a bundle id: {bundle_id!r}")
    wiring = _wiring(self.app.conf.coretriage_data_dir)
    bundle = wiring.config.spool_dir / bundle_id
    if not bundle.is_dir():
        return {"bundle": bundle_id, "skipped": "no such bundle (already cleaned up?)"}
    done = wiring.process_bundle(bundle)
    return {"bundle": bundle_id, "crash_id": done.crash.id, "group_id": done.crash.group_ref}
