"""Celery: the analysis of a spool bundle as a task.

Only the bundle id travels through Redis; the bundle on disk is the truth,
and the collector re-submits any bundle not marked done, so a lost message
costs a delay, never a crash. Messages go to the ``queue_name`` setting's
queue: by default this host's (``coretriage.<hostname>``, the spool is
local), or one central queue that workers on any machine consume when they
share the data dir and the database.

Delivery is at least once and the record exactly once:

- late acknowledgement (``acks_late``, ``reject_on_worker_lost``): a worker
  killed mid-task leaves its message unacknowledged, and Redis gives it to
  another worker once it has been out for ``VISIBILITY_TIMEOUT``; every live
  worker looks for such messages every ``RESTORE_EVERY`` seconds, and a
  worker starting looks at once. A dead worker's task runs again within
  about 40 s;
- the same rule hands out a message whose analysis is still running, and
  the collector re-submits a bundle not done after ``retry_after``: the
  analysis is idempotent by bundle (``coretriage.pipeline.process_bundle``,
  ``coretriage.claims``). A delivery that finds its bundle held by another
  worker is retried in ``BUSY_RETRY`` seconds as a new message, so that some
  message stands for the bundle until it is done, whoever dies.

A worker with ``central_url`` and without the central data dir fetches
the bundle from the central web server first (``coretriage.remote``); while
that server is away, the task is retried every ``CENTRAL_RETRY`` seconds.

The task's soft and hard time limits follow ``gdb_timeout``.
"""

from __future__ import annotations

import functools

from celery import Celery, shared_task

VISIBILITY_TIMEOUT = 30  # seconds an unacknowledged message waits before another worker gets it
RESTORE_EVERY = 5  # seconds between a worker's looks for such messages
BUSY_RETRY = 10  # seconds; below VISIBILITY_TIMEOUT, or the retry itself would be handed out twice
TASK_MARGIN = 60.0  # seconds around gdb: decompressing, the sandbox's copy, storing
CENTRAL_RETRY = 15  # seconds before a remote worker asks a central server that was away again
HANDOFF_TIMEOUT = 2.0  # seconds the collector waits for the broker before it backs off


def time_limits(config) -> tuple[float, float]:
    """(soft, hard) seconds for one task: gdb's own deadline and a margin."""
    soft = config.gdb_timeout + TASK_MARGIN
    return soft, soft + 30.0


def busy_retries(config) -> int:
    """How often a delivery whose bundle is held looks again: for longer
    than any analysis may run, then it leaves the bundle to the collector's
    re-submit."""
    return int(2 * time_limits(config)[1] / BUSY_RETRY) + 1


def make_celery(config, *, submitter: bool = False) -> Celery:
    """The Celery app of a worker, or (``submitter``) of the collector's
    hand-off: a broker that does not answer fails within HANDOFF_TIMEOUT,
    once, instead of retrying for seconds."""
    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": RESTORE_EVERY,
        "unacked_restore_throttle": 1,  # a real look every RESTORE_EVERY, not every tenth
        "unacked_mutex_expire": 20,  # a worker killed while restoring blocks the others this long at most
    }
    if submitter:
        # one immediate reconnect (a pooled connection the broker dropped when it restarted), then fail
        transport.update(max_retries=1, interval_start=0, socket_connect_timeout=HANDOFF_TIMEOUT,
                         socket_timeout=HANDOFF_TIMEOUT)
    soft, hard = time_limits(config)
    app = Celery("coretriage", broker=config.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one gdb per worker process at a time
        worker_concurrency=config.worker_concurrency,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=HANDOFF_TIMEOUT if submitter else 5,
        broker_transport_options=transport,
        task_default_queue=config.queue_name,
        task_soft_time_limit=soft,
        task_time_limit=hard,
    )
    app.conf.coretriage_data_dir = str(config.data_dir)
    return app


def hand_off(config):
    """The collector's submit through the queue: ``send(bundle_id)``; a broker
    that cannot be reached raises ``collector.watch.HandoffError`` (the
    collector then backs off its whole queue)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from collector.watch import HandoffError

    app = make_celery(config, submitter=True)

    def send(bundle_id: str) -> None:
        try:
            # retry=False: a dead broker fails at once; the bundle stays in the spool
            app.send_task("coretriage.analyze_bundle", args=[bundle_id], queue=config.queue_name, retry=False)
        except (OperationalError, RedisError, OSError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HandoffError(f"broker {_where(config.broker_url)}: {why}") from None
    return send


def _where(url: str) -> str:
    """The broker's scheme, host and port: never its password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "(unparsable broker_url)"


@functools.lru_cache(maxsize=4)
def _wiring(data_dir: str):
    from coretriage.wiring import Wiring

    return Wiring.load(data_dir)


@shared_task(name="coretriage.analyze_bundle", bind=True, acks_late=True, max_retries=None)
def analyze_bundle(self, bundle_id: str) -> dict:
    from collector.bundle import is_bundle_id
    from coretriage.claims import BundleBusy

    if not is_bundle_id(bundle_id):  # ids only: never a path from the queue
        raise ValueError(f"not a bundle id: {bundle_id!r}")
    wiring = _wiring(self.app.conf.coretriage_data_dir)
    bundle = wiring.config.spool_dir / bundle_id
    try:
        if not bundle.is_dir():
            if wiring.config.central_url:  # a worker without the central data dir fetches it
                from coretriage.remote import CentralAway, analyze_fetched
                try:
                    return analyze_fetched(wiring, bundle_id)
                except CentralAway:
                    raise self.retry(countdown=CENTRAL_RETRY) from None
            return {"bundle": bundle_id, "skipped": "no such bundle (already cleaned up?)"}
        done = wiring.process_bundle(bundle)
    except BundleBusy:
        if self.request.retries >= busy_retries(wiring.config):
            return {"bundle": bundle_id, "skipped": "held by another worker too long; the collector re-submits it"}
        raise self.retry(countdown=BUSY_RETRY)
    if done is None:
        return {"bundle": bundle_id, "skipped": "already done"}
    return {"bundle": bundle_id, "crash_id": done.crash.id, "group_id": done.crash.group_ref, "new": done.new}
