"""``GET /metrics``: Prometheus text format, built from the store on each scrape.

Labels are bounded: executable, host, signal and group state; never a crash
or group id. Open by default, as exporters usually are; the
``metrics_token`` setting makes it ask for ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, abort, current_app, request

bp = Blueprint("metrics", __name__)


def _spool(spool_dir) -> tuple[int, int]:
    """(bundles waiting, bytes) in the spool: one directory level and its files."""
    bundles = size = 0
    try:
        entries = list(os.scandir(spool_dir))
    except OSError:
        return 0, 0
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
            continue
        bundles += 1
        try:
            for f in os.scandir(entry.path):
                if f.is_file(follow_symlinks=False):
                    size += f.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
    return bundles, size


class _StoreCollector:
    def __init__(self, store, config):
        self.store, self.config = store, config

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        crashes = CounterMetricFamily("coretriage_crashes", "Crashes stored, by program, host, signal and the "
                                      "state of their group", labels=["executable", "host", "signal", "state"])
        for executable, host, sig, state, count in self.store.crash_totals():
            crashes.add_metric([executable or "", host or "", sig or "", state or ""], count)
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
