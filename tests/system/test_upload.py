"""Many hosts, one place: a host's real crash, captured by the real kernel
handler, uploaded by a real ``coretriage collector run`` to a real central
web server over HTTP, analyzed there and recorded under the host's
registered name, its core downloadable centrally. Faults each record every
crash exactly once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import zstandard

import crashkit
from collector.spool import finished_bundles
from uploadkit import add_host, central_crashes, collector, host_settings, wait_crashes
from webclient import Client
from waiting import wait_for
from webserver import add_user, cli, web_server


def _crash(exe, *args):
    proc = subprocess.run([str(exe), *args], preexec_fn=crashkit.allow_cores, capture_output=True)
    assert proc.returncode == -11


def _done_bundles(data):
    return [b for b in finished_bundles(data / "spool", include_done=True) if (b / "done").exists()]


def test_a_crash_arrives_centrally_under_the_registered_name(collector_installed, samples, tmp_path):
    host = collector_installed
    central = tmp_path / "central"
    token = add_host(central, "web-7")
    add_user(central, "root", "admin", "pw-root-1")
    exe = tmp_path / "app" / "segv"
    exe.parent.mkdir()
    shutil.copy(samples("segv").exe, exe)
    with web_server(central, tmp_path / "web.log") as url:
        host_settings(host, url, token, heartbeat_interval=1)
        with collector(host, tmp_path / "collector.log") as proc:
            crashed = time.monotonic()
            _crash(exe, "a")
            crashes = wait_crashes(central, 1, alive=[proc])
            print(f"crash -> recorded centrally: {time.monotonic() - crashed:.1f} s")
            shutil.rmtree(exe.parent)  # the central analysis had only the uploaded copy
            _crash_count_stays(central, 1)
            # the host marks the bundle done once the server has it, and says so in a later heartbeat
            def reported():
                (h,) = json.loads(cli(central, "host", "list", "--json"))
                return h["last_crash_at"] and h["waiting"] == 0
            wait_for(reported, "a heartbeat since the crash, with nothing waiting", 60)
        log = (tmp_path / "collector.log").read_text()
        assert token not in log
        (c,) = crashes
        assert c.host == "web-7"
        assert c.meta["claimed_hostname"] and c.meta["uploaded_by"] == "web-7"
        groups = json.loads(cli(central, "list", "--json"))
        assert groups[0]["signature"] == samples("segv").expected_signature
        # the host marked it done and removed its core: the server has it
        (bundle,) = _done_bundles(host)
        assert not (bundle / "core.zst").exists()
        # the core, from the central data dir, to an admin
        web = Client(url)
        assert web.login("root", "pw-root-1").status == 302
        got = web.get(f"/crashes/{c.id}/core")
        assert got.status == 200
        assert zstandard.ZstdDecompressor().stream_reader(got.body).read(4) == b"\x7fELF"
        page = web.get(f"/crashes/{c.id}")
        assert page.status == 200 and "web-7" in page.text
        group = web.get(f"/groups/{c.group_id}")
        assert group.status == 200 and "web-7" in group.text and c.meta["claimed_hostname"] not in group.text
        hosts = web.get("/hosts")
        assert hosts.status == 200 and "web-7" in hosts.text and "PATTERN REPLACED" not in hosts.text
        listed = json.loads(cli(central, "host", "list", "--json"))
        assert listed[0]["name"] == "web-7" and listed[0]["last_heartbeat"] and listed[0]["core_pattern_ours"] is True
        assert listed[0]["last_crash_at"] and listed[0]["waiting"] == 0 and listed[0]["markers"] == []
        assert {d["name"] for d in listed[0]["doctor"]} >= {"core_pattern"}
        # someone replaces the host's core_pattern (Apport): its next heartbeat says so, the page shows it
        replaced = Client(url).request("POST", "/ingest/v1/heartbeat", json={
            "core_pattern_ours": False, "core_pattern": "|/usr/share/apport/apport %p", "interval": 1},
            headers={"Authorization": f"Bearer {token}"})
        assert replaced.status == 200
        assert "PATTERN REPLACED" in web.get("/hosts").text
        assert "PATTERN REPLACED" in cli(central, "host", "list")
        time.sleep(3.5)  # no heartbeat for three intervals: stale
        assert "STALE" in web.get("/hosts").text and "STALE" in cli(central, "host", "list")
    # gdb on the centrally stored core, with the uploaded executable and libraries
    import subprocess as sp
    from webserver import COMMAND
    out = sp.run([str(COMMAND), "--data-dir", str(central), "gdb", c.id, "-batch", "-ex", "bt"],
                 capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "main" in out.stdout and "SIGSEGV" in out.stdout, out.stdout


def _crash_count_stays(central, n, seconds=2.0):
    time.sleep(seconds)
    assert len(central_crashes(central)) == n


def _file_uploads(web_log):
    return [line for line in web_log.read_text().splitlines() if '"PATCH /ingest/v1/files/' in line]


def test_libc_is_sent_once_across_two_crashes(collector_installed, samples, tmp_path):
    host, central = collector_installed, tmp_path / "central"
    token = add_host(central, "db-1")
    web_log = tmp_path / "web.log"
    with web_server(central, web_log) as url:
        host_settings(host, url, token)
        with collector(host, tmp_path / "collector.log") as proc:
            _crash(samples("segv").exe, "a")
            wait_crashes(central, 1, alive=[proc])
            first = _file_uploads(web_log)
            stored = sorted(os.listdir(central / "files" / "sha256"))
            _crash(samples("segv").exe, "bb")
            wait_crashes(central, 2, alive=[proc])
            second = _file_uploads(web_log)
    libc = [f for f in stored if any(f in line for line in first)]
    assert len(first) >= 2 and len(libc) == len(first)  # the program and its libraries, once each
    assert second == first, "the second crash sent captured files the server already had"
    assert sorted(os.listdir(central / "files" / "sha256")) == stored
    print(f"captured files sent: {len(first)} for the first crash, 0 for the second")


def test_a_crash_while_the_server_is_down_arrives_once_it_is_up(collector_installed, samples, tmp_path):
    from servicekit import free_port

    host, central = collector_installed, tmp_path / "central"
    token = add_host(central, "edge-3")
    port = free_port()
    host_settings(host, f"http://127.0.0.1:{port}", token)
    log = tmp_path / "collector.log"
    with collector(host, log) as proc:
        for n in range(2):
            _crash(samples("segv").exe, "x" * n)
        wait_for(lambda: "paused" in log.read_text(), "the collector to try, find no server and back off", 120)
        # the kernel lets a crashed process go once its core is read: meta.json may come after
        wait_for(lambda: len(list(finished_bundles(host / "spool"))) == 2, "both crashes' bundles", 60)
        assert not _done_bundles(host)
        with web_server(central, tmp_path / "web.log", port=port):
            crashes = wait_crashes(central, 2, timeout=180, alive=[proc])
            _crash_count_stays(central, 2, seconds=4)
    assert {c.host for c in crashes} == {"edge-3"}
    assert len(_done_bundles(host)) == 2
    # one back-off for the queue: no more than a few refused connections were logged per pause
    assert log.read_text().count("paused") < 20


BIG = """
import ctypes, os
keep = os.urandom({size})  # incompressible: the core is as big as this
ctypes.string_at(0)
"""


def test_a_collector_killed_mid_upload_resumes_and_the_crash_arrives_once(collector_installed, tmp_path):
    import signal
    import sys

    from uploadkit import start_collector, stop_collector

    host, central = collector_installed, tmp_path / "central"
    token = add_host(central, "batch-9")
    size = 48 << 20
    with web_server(central, tmp_path / "web.log") as url:
        host_settings(host, url, token, upload_bandwidth=6 << 20, upload_max_core=1 << 30)
        log = tmp_path / "collector.log"
        proc = start_collector(host, log)
        try:
            env = {"PATH": "/usr/bin:/bin"}
            crashed = subprocess.run([sys.executable, "-I", "-c", BIG.format(size=size)], env=env,
                                     preexec_fn=crashkit.allow_cores, capture_output=True)
            assert crashed.returncode == -11
            part_dir = central / "ingest" / "batch-9" / "bundles"
            deadline = time.monotonic() + 120
            while True:
                parts = list(part_dir.glob("*/core.zst")) if part_dir.is_dir() else []
                if parts and parts[0].stat().st_size > 8 << 20:
                    break
                assert time.monotonic() < deadline, f"no core upload under way: {log.read_text()[-2000:]}"
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            received = parts[0].stat().st_size
            assert received < size, "the upload finished before the kill"
            proc = start_collector(host, log)
            (c,) = wait_crashes(central, 1, timeout=180, alive=[proc])
            _crash_count_stays(central, 1, seconds=3)
        finally:
            stop_collector(proc)
    text = log.read_text()
    resumed = [line for line in text.splitlines() if "resuming" in line and "core.zst" in line]
    assert resumed, text[-3000:]
    at = int(resumed[0].split(" at byte ")[1].split()[0])
    assert at >= received - (8 << 20) and at > 0
    assert c.host == "batch-9" and c.core_file
    assert c.meta["core_size"] > size


def test_a_full_central_disk_answers_507_and_the_host_keeps_its_bundle(collector_installed, samples, tmp_path):
    host, central = collector_installed, tmp_path / "central"
    central.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(central)], check=True)
    try:
        (central / "coretriage.toml").write_text(f"ingest_min_free = {32 << 20}\n")
        token = add_host(central, "full-1")
        web_log = tmp_path / "web.log"
        with web_server(central, web_log) as url:
            host_settings(host, url, token)
            log = tmp_path / "collector.log"
            with collector(host, log) as proc:
                _crash(samples("segv").exe, "a")
                deadline = time.monotonic() + 60
                while '" 507 ' not in web_log.read_text():
                    assert time.monotonic() < deadline, "no 507"
                    time.sleep(0.2)
                wait_for(lambda: "507" in log.read_text(), "the collector to log the 507", 60)
                (bundle,) = finished_bundles(host / "spool")
                assert (bundle / "core.zst").exists() and not (bundle / "done").exists()
                leftover = [os.path.join(d, n) for d, _, names in os.walk(central / "ingest") for n in names]
                assert leftover == [], leftover  # nothing half-written
                assert not list((central / "spool").glob("*")) if (central / "spool").exists() else True
                subprocess.run(["mount", "-o", "remount,size=1g", str(central)], check=True)
                (c,) = wait_crashes(central, 1, timeout=120, alive=[proc])
                _crash_count_stays(central, 1, seconds=2)
        assert c.host == "full-1"
        assert (bundle / "done").exists()
    finally:
        subprocess.run(["umount", "-l", str(central)], check=False)


def test_a_core_over_upload_max_core_travels_as_its_stack_core(collector_installed, samples, tmp_path):
    host, central = collector_installed, tmp_path / "central"
    token = add_host(central, "tiny-link")
    with web_server(central, tmp_path / "web.log") as url:
        host_settings(host, url, token, upload_max_core=1)
        with collector(host, tmp_path / "collector.log") as proc:
            _crash(samples("segv").exe, "a")
            (c,) = wait_crashes(central, 1, alive=[proc])
    assert c.meta["core_kind"] == "stack" and "upload_max_core" in c.meta["core_kind_reason"]
    assert json.loads(cli(central, "list", "--json"))[0]["signature"] == samples("segv").expected_signature
    (bundle,) = _done_bundles(host)
    assert (bundle / "core.zst").exists() and not (bundle / "stack.zst").exists()  # the full core stays here


def test_a_core_the_server_finds_too_big_travels_as_its_stack_core(collector_installed, tmp_path):
    import sys

    host, central = collector_installed, tmp_path / "central"
    central.mkdir(mode=0o700)
    (central / "coretriage.toml").write_text(f"ingest_max_core = {16 << 20}\n")
    token = add_host(central, "big-1")
    with web_server(central, tmp_path / "web.log") as url:
        host_settings(host, url, token)
        with collector(host, tmp_path / "collector.log") as proc:
            crashed = subprocess.run([sys.executable, "-I", "-c", BIG.format(size=32 << 20)],
                                     env={"PATH": "/usr/bin:/bin"}, preexec_fn=crashkit.allow_cores,
                                     capture_output=True)
            assert crashed.returncode == -11
            (c,) = wait_crashes(central, 1, alive=[proc])
    assert c.meta["core_kind"] == "stack" and "refused by the server" in c.meta["core_kind_reason"]
    assert c.meta["core_read"] > 32 << 20
    assert "too big" in (tmp_path / "collector.log").read_text()
