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

    # a bundle waits for its analysis: counted in the spool, its bytes too, and as the queue without a broker
    from collector.watch import import_dump

    core = tmp_path / "core-waiting"
    core.write_bytes(samples("segv").core.read_bytes())
    bundle = import_dump(core, config.spool_dir)
    on_disk = sum(p.stat().st_blocks * 512 for p in bundle.rglob("*") if p.is_file())
    with web_server(config.data_dir, tmp_path / "web2.log") as base:
        found = families(get(base + "/metrics")[2])
    assert found["coretriage_spool_bundles"].samples[0].value == 1
    assert found["coretriage_spool_bytes"].samples[0].value >= on_disk > 0
    assert [(s.labels["source"], s.value) for s in found["coretriage_queue_depth"].samples] == [("spool", 1)]


def test_crash_labels_stay_bounded_however_many_executables(config, store, tmp_path):
    """A thousand renamed copies crashing make no thousand series: past
    metrics_executables, executables share executable="(other)", and the
    counts still add up to the store's."""
    (config.data_dir / "coretriage.toml").write_text("metrics_executables = 3\n")
    for n in range(40):
        exe = f"/usr/bin/main{n % 3}" if n < 30 else f"/tmp/copy-{n}"  # ten crashes each, then ten one-offs
        ingest_metadata(config, store, f"c{n:012x}", executable=exe, signal=11, command_line=exe, pid=10 + n,
                        reason="test", meta={"host": "web1"}, crashed_at=1000.0 + n)
    with web_server(config.data_dir, tmp_path / "web.log") as base:
        found = families(get(base + "/metrics")[2])
    totals = {s.labels["executable"]: s.value for s in found["coretriage_crashes"].samples
              if s.name == "coretriage_crashes_total"}
    assert totals == {"/usr/bin/main0": 10, "/usr/bin/main1": 10, "/usr/bin/main2": 10, "(other)": 10}
    assert sum(totals.values()) == len(store.crash_ids())


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


def test_analysis_histogram_drops_and_queue_match_the_store(collector_installed, samples, tmp_path):
    """Real crashes through the kernel handler under rate, size, no_core and
    free-space policies, analyzed by the pipeline as the daemon does: /metrics counts
    the analyses and the dropped cores the store holds, by reason."""
    import shutil
    import socket
    import subprocess
    import time

    import crashkit
    from collector.spool import finished_bundles
    from coretriage.config import load_config
    from coretriage.pipeline import process_bundle
    from coretriage.store import Store
    from redisserver import start_redis
    from servicekit import free_port, stop

    data = collector_installed
    bins = tmp_path / "bin"
    bins.mkdir()

    def crash_as(name, collector_toml):
        (data / "collector.toml").write_text(collector_toml)
        exe = bins / name
        if not exe.exists():
            shutil.copy(samples("segv").exe, exe)
        assert subprocess.run([str(exe)], preexec_fn=crashkit.allow_cores, capture_output=True).returncode == -11

    # first: a disk this "full" would also evict the cores waiting before it
    crash_as("spacey", 'min_free_space = "1000T"\n')  # stack core (space)
    rate = "rate_limit = 1\nrate_window = 600\nstack_rate_limit = 1\n"
    for _ in range(3):
        crash_as("rated", rate)  # full core, then stack core (rate), then nothing (rate)
    crash_as("big", "max_core_size = 65536\n")  # stack core (size)
    crash_as("nocore", f'no_core = ["{bins}/nocore"]\nno_core_kind = "none"\n')  # nothing (policy)
    config = load_config(data)
    deadline = time.monotonic() + 120  # generous: six handlers on a loaded machine
    while len(list(finished_bundles(config.spool_dir))) < 6:
        assert time.monotonic() < deadline, list(config.spool_dir.iterdir())
        time.sleep(0.1)
    store = Store(config.database_url)
    try:
        for bundle in finished_bundles(config.spool_dir):
            process_bundle(config, store, bundle)
        with store.engine.connect() as db:
            import sqlalchemy as sa
            timed = [r[0] for r in db.execute(sa.text("select analysis_seconds from crashes")).all()
                     if r[0] is not None]
            reasons = sorted(r[0] for r in db.execute(sa.text("select dropped from crashes")).all() if r[0])
    finally:
        store.close()
    assert len(timed) == 4 and all(0 < t < 300 for t in timed)  # one full and three stack cores analyzed
    assert reasons == ["policy", "rate", "rate", "size", "space"]

    with web_server(data, tmp_path / "web.log") as base:
        _, _, text = get(base + "/metrics")
    found = families(text)
    hist = {s.name: s for s in found["coretriage_analysis_seconds"].samples if s.name.endswith(("_count", "_sum"))}
    assert found["coretriage_analysis_seconds"].type == "histogram"
    assert hist["coretriage_analysis_seconds_count"].value == 4
    assert abs(hist["coretriage_analysis_seconds_sum"].value - sum(timed)) < 1e-6
    buckets = [(float(s.labels["le"]), s.value) for s in found["coretriage_analysis_seconds"].samples
               if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == (float("inf"), 4)
    for le, n in buckets:
        assert n == sum(1 for t in timed if t <= le)
    dropped = {s.labels["reason"]: s.value for s in found["coretriage_cores_dropped"].samples
               if s.name == "coretriage_cores_dropped_total"}
    assert dropped == {"size": 1, "rate": 2, "space": 1, "policy": 1, "other": 0}
    assert sum(s.value for s in found["coretriage_crashes"].samples if s.name == "coretriage_crashes_total") == 6
    assert found["coretriage_spool_bundles"].samples[0].value == 0  # all analyzed
    assert found["coretriage_spool_bytes"].samples[0].value > 0  # their files stay for reprocess
    queue = found["coretriage_queue_depth"].samples
    assert [(s.labels["source"], s.value) for s in queue] == [("spool", 0)]
    assert found["coretriage_queue_up"].samples[0].value == 1

    # a broker: the queue_name Celery queue in Redis, and a dead Redis costs a scrape no more than its timeout
    from coretriage.config import load_config

    port = free_port()
    redis = start_redis(port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"RPUSH {load_config(data).queue_name} a b c d\r\n".encode())
            assert s.recv(100) == b":4\r\n"
        (data / "coretriage.toml").write_text(f'broker_url = "redis://127.0.0.1:{port}/0"\n')
        with web_server(data, tmp_path / "web2.log") as base:
            found = families(get(base + "/metrics")[2])
            assert [(s.labels["source"], s.value) for s in found["coretriage_queue_depth"].samples] == [("redis", 4)]
            assert found["coretriage_queue_up"].samples[0].value == 1
            started = time.monotonic()
            get(base + "/metrics")
            alive = time.monotonic() - started  # what a scrape costs on this machine now
            stop(redis)
            started = time.monotonic()
            found = families(get(base + "/metrics")[2])
            assert time.monotonic() - started < alive + 5
            assert found["coretriage_queue_depth"].samples == [] and found["coretriage_queue_up"].samples[0].value == 0
    finally:
        stop(redis)
