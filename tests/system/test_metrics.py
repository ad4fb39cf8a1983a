"""GET /metrics on the real web server: Prometheus text that the official
parser reads, with counters that match the store."""

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coretriage.ingest import ingest, ingest_metadata
from webserver import web_server


def get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_parse_and_match_the_store(config, store, samples, tmp_path):
    for v in (0, 1):
        ingest(config, store, samples("segv", v).core, samples("segv", v).exe)
    dfree = ingest(config, store, samples("double_free").core, samples("double_free").exe)
    for n in range(3):
        ingest_metadata(config, store, f"c{n:012x}", executable="/usr/sbin/nginx", signal=6, command_line="nginx",
                        pid=10 + n, reason="size", meta={"host": f"web{n % 2}"}, crashed_at=1000.0 + n)
    store.set_state(dfree.crash.group_id, "resolved")
    with web_server(config.data_dir, tmp_path / "web.log") as base:
        status, kind, text = get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    found = families(text)
    crashes = found["coretriage_crashes"]
    assert crashes.type == "counter"
    samples_ = [s for s in crashes.samples if s.name == "coretriage_crashes_total"]
    assert sum(s.value for s in samples_) == len(store.crash_ids()) == 6
    by = {(s.labels["executable"], s.labels["host"], s.labels["signal"], s.labels["state"]): s.value for s in samples_}
    assert by[("/usr/sbin/nginx", "web0", "SIGABRT", "new")] == 2
    assert by[("/usr/sbin/nginx", "web1", "SIGABRT", "new")] == 1
    assert by[(dfree.analysis.executable, "", "SIGABRT", "resolved")] == 1
    for s in samples_:  # bounded: no crash or group id in any label
        assert not any(v.startswith(("c0", "g")) and v[1:].isalnum() for v in s.labels.values())
    states = {s.labels["state"]: s.value for s in found["coretriage_groups"].samples}
    assert states == {"new": 2, "acknowledged": 0, "resolved": 1, "regressed": 0, "ignored": 0}
    assert found["coretriage_alerts_pending"].samples[0].value == 3  # one `new` per group, nobody to send to
    assert found["coretriage_spool_bundles"].samples[0].value == 0


def test_metrics_token_setting(config, store, tmp_path):
    (config.data_dir / "coretriage.toml").write_text('metrics_token = "scrape-me"\n')
    with web_server(config.data_dir, tmp_path / "web.log") as base:
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(base + "/metrics")
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            get(base + "/metrics", token="wrong")
        status, _, text = get(base + "/metrics", token="scrape-me")
        assert status == 200 and "coretriage_groups" in families(text)
