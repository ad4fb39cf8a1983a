"""``GET /metrics``: Prometheus text format, built from the store on each scrape.

Labels are bounded: executable, host, signal and group state; never a crash
or group id. An executable's path is the crashed process's to choose (a
user can crash a thousand renamed copies), so only the
``metrics_executables`` with the most crashes get their own label; the
others are counted together under ``executable="(other)"``. Open by
default, as exporters usually are; the ``metrics_token`` setting makes it
ask for ``Authorization: Bearer <token>``.

Everything comes from the store or the disk, never from this process's
memory: the analyses run in the collector or the workers, not here. The
analysis histogram reads each crash's ``analysis_seconds``; dropped cores
each crash's ``dropped`` reason (``coretriage.drops``: size, rate, space,
policy, other). The queue depth is the length of the queue_name Celery queue
in Redis when a broker is configured (asked with a half-second timeout:
``coretriage_queue_up`` is 0 and the depth absent when Redis does not
answer), else the bundles waiting in the spool.
"""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, abort, current_app, request

bp = Blueprint("metrics", __name__)


ANALYSIS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # seconds
REDIS_TIMEOUT = 0.5  # seconds: a scrape never waits on a dead broker for longer


def _spool(spool_dir) -> tuple[int, int]:
    """(bundles waiting for analysis, bytes on disk) in the spool: every
    file under it, a file hard-linked twice counted once, no symlink followed."""
    from collector.spool import finished_bundles

    try:
        waiting = sum(1 for _ in finished_bundles(spool_dir))
    except OSError:
        waiting = 0
    size, seen = 0, set()
    for top, dirs, files in os.walk(spool_dir):
        for name in files:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512
    return waiting, size


def _redis_depth(broker_url: str, queue: str) -> int | None:
    """LLEN of the Celery queue, or None when Redis does not answer in time."""
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=REDIS_TIMEOUT,
                                      socket_connect_timeout=REDIS_TIMEOUT, retry_on_timeout=False)
        try:
            return int(client.llen(queue))
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return None


OTHER = "(other)"


def bounded(totals, keep: int) -> dict[tuple, int]:
    """crash_totals' rows, the executables past the ``keep`` with the most
    crashes folded into OTHER: (executable, host, signal, state) -> count."""
    rows = [(executable or "", host or "", sig or "", state or "", count)
            for executable, host, sig, state, count in totals]
    by_exe: dict[str, int] = {}
    for executable, _, _, _, count in rows:
        by_exe[executable] = by_exe.get(executable, 0) + count
    kept = set(sorted(by_exe, key=lambda e: (-by_exe[e], e))[:max(keep, 0)])
    out: dict[tuple, int] = {}
    for executable, host, sig, state, count in rows:
        key = (executable if executable in kept else OTHER, host, sig, state)
        out[key] = out.get(key, 0) + count
    return out


class _StoreCollector:
    def __init__(self, store, config):
        self.store, self.config = store, config

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        crashes = CounterMetricFamily("coretriage_crashes", "Crashes stored, by program, host, signal and the "
                                      "state of their group", labels=["executable", "host", "signal", "state"])
        for labels, count in sorted(bounded(self.store.crash_totals(), self.config.metrics_executables).items()):
            crashes.add_metric(list(labels), count)
        yield crashes
        groups = GaugeMetricFamily("coretriage_groups", "Crash groups by state", labels=["state"])
        by_state = self.store.groups_by_state()
        from coretriage.store import STATES
        for state in STATES:
            groups.add_metric([state], by_state.get(state, 0))
        yield groups
        pending, failed = self.store.alert_backlog()
        yield GaugeMetricFamily("coretriage_alerts_pending", "Alert events not yet sent", value=pending)
        yield CounterMetricFamily("coretriage_alerts_failed", "Alert events given up after their retries",
                                  value=failed)
        bundles, size = _spool(self.config.spool_dir)
        yield GaugeMetricFamily("coretriage_spool_bundles", "Crash bundles waiting in the spool (not yet "
                                "analyzed, or failing analysis)", value=bundles)
        yield GaugeMetricFamily("coretriage_spool_bytes", "Bytes on disk in the spool", value=size)

        from prometheus_client.core import HistogramMetricFamily

        under, count, total = self.store.analysis_histogram(ANALYSIS_BUCKETS)
        yield HistogramMetricFamily(
            "coretriage_analysis_seconds", "Time the analysis (gdb) of each stored crash took",
            buckets=[(str(b), n) for b, n in zip(ANALYSIS_BUCKETS, under)] + [("+Inf", count)], sum_value=total)
        failures = CounterMetricFamily("coretriage_analysis_failures", "Analyses that gave no backtrace, by the "
                                       "problem that says why (gdb_timeout, not_a_core, ...)", labels=["reason"])
        for reason, count in sorted(self.store.failures_by_reason().items()):
            failures.add_metric([reason], count)
        yield failures
        from coretriage.drops import REASONS

        dropped = CounterMetricFamily("coretriage_cores_dropped", "Crashes stored without their full core, by "
                                      "why it was not kept", labels=["reason"])
        by_reason = self.store.drops_by_reason()
        for reason in REASONS:
            dropped.add_metric([reason], by_reason.get(reason, 0))
        yield dropped
        yield from self._queue(bundles)

    def _queue(self, spool_waiting: int):
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("coretriage_queue_depth", "Bundles waiting for analysis: the queue_name "
                                  "Celery queue in Redis, or the spool without a broker", labels=["source"])
        broker = self.config.broker_url
        if broker and broker.startswith(("redis://", "rediss://", "unix://")):
            found = _redis_depth(broker, self.config.queue_name)
            if found is not None:
                depth.add_metric(["redis"], found)
            up = found is not None
        elif broker:
            up = False  # a broker this exporter cannot ask
        else:
            depth.add_metric(["spool"], spool_waiting)
            up = True
        yield depth
        yield GaugeMetricFamily("coretriage_queue_up", "1 when the queue depth could be read (0: the broker "
                                "did not answer within its timeout)", value=1 if up else 0)


@bp.route("/metrics")
def metrics():
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    config = current_app.extensions["coretriage"]
    if config.metrics_token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {config.metrics_token}".encode()):
            abort(401)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(current_app.extensions["store"], config))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
