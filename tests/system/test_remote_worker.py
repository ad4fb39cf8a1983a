"""Workers anywhere (issue 9): a real ``coretriage worker`` that shares only
the central database, broker and queue, not the central data dir, takes a
real crash a host uploaded, fetches it from the central web server over
HTTP with the workers' token, keeps the captured files in its own data dir
by content hash (the next crash of the same program fetches none), records
it once, and leaves the core where the central UI and ``coretriage gdb``
find it; a central server away when the worker asks costs a retry, and the
crash is still recorded once. Real kernel handler, collector, web server, Redis and PostgreSQL."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess

import zstandard

import crashkit
from collector.spool import finished_bundles
from pgserver import postgres_server
from redisserver import start_redis, start_worker
from servicekit import free_port, stop
from uploadkit import add_host, central_crashes, collector, host_settings, wait_crashes
from waiting import wait_for
from webclient import Client
from webserver import COMMAND, add_user, cli, web_server


def _crash(exe, *args):
    proc = subprocess.run([str(exe), *args], preexec_fn=crashkit.allow_cores, capture_output=True)
    assert proc.returncode == -11


def _fetched_files(web_log) -> list[str]:
    return re.findall(r'"GET /worker/v1/files/([0-9a-f]{64}) HTTP[^"]*" 200', web_log.read_text())


def _done_centrally(central) -> int:
    return sum(1 for b in finished_bundles(central / "spool", include_done=True) if (b / "done").exists())


def test_a_worker_without_the_central_data_dir_fetches_over_http_and_caches_files(collector_installed, samples,
                                                                                    tmp_path):
    host, central, elsewhere = collector_installed, tmp_path / "central", tmp_path / "worker"
    central.mkdir(mode=0o700)
    elsewhere.mkdir(mode=0o700)
    token = secrets.token_urlsafe(32)
    redis_port = free_port()
    redis = start_redis(redis_port)
    worker = None
    try:
        with postgres_server() as pg:
            shared = {"database_url": pg, "broker_url": f"redis://127.0.0.1:{redis_port}/0",
                      "queue_name": "coretriage.remote-test"}
            (central / "coretriage.toml").write_text(
                "".join(f'{k} = "{v}"\n' for k, v in {**shared, "worker_token": token}.items()))
            cli(central, "db", "upgrade")
            host_token = add_host(central, "far-1")
            add_user(central, "root", "admin", "pw-root-1")
            web_log, worker_log, port = tmp_path / "web.log", tmp_path / "worker.log", free_port()
            url = f"http://127.0.0.1:{port}"

            def start():
                proc = start_worker(elsewhere, worker_log, session=True, central_url=url, worker_token=token,
                                    **shared)
                wait_for(lambda: worker_log.read_bytes().count(b"ready.") > started or proc.poll() is not None,
                         "the worker", 120)  # generous: a loaded machine
                assert proc.poll() is None, worker_log.read_text(errors="replace")[-3000:]
                return proc

            started = 0
            with web_server(central, web_log, port=port):
                worker = start()
                host_settings(host, url, host_token)
                with collector(host, tmp_path / "collector.log") as proc:
                    _crash(samples("segv").exe, "a")
                    (c,) = wait_crashes(central, 1, alive=[proc, worker])
                    wait_for(lambda: _done_centrally(central) == 1, "the central bundle marked done", 60)
                    first = _fetched_files(web_log)
                    _crash(samples("segv").exe, "bb")
                    wait_crashes(central, 2, alive=[proc, worker])
                    wait_for(lambda: _done_centrally(central) == 2, "the second central bundle marked done", 60)
                    second = _fetched_files(web_log)
                    # a third crash queued while no worker runs, and the server away when one starts
                    _stop(worker)
                    _crash(samples("segv").exe, "ccc")
                    wait_for(lambda: len(list(finished_bundles(central / "spool", include_done=True))) == 3,
                             "the third crash received", 60)

                # recorded once each, under the registered name, analyzed by the worker elsewhere
                crashes = central_crashes(central)
                assert len(crashes) == 2 and {x.host for x in crashes} == {"far-1"}
                assert all(x.id in worker_log.read_text() for x in crashes)  # the worker elsewhere stored them
                assert cli(central, "list").count(samples("segv").expected_signature) == 1
                # the files crossed once, into the worker's own cache by content hash
                cache = elsewhere / "files" / "sha256"
                assert len(first) >= 2 and second == first, (first, second)
                assert set(first) <= set(os.listdir(cache))
                # nothing else stays on the worker: no fetched bundle, no core
                assert [p for p in (elsewhere / "fetched").iterdir() if not p.name.startswith(".")] == []
                assert not (elsewhere / "cores").exists() or not list((elsewhere / "cores").iterdir())
                # the core is central: the bundle done there, its core linked to the record's path
                for x in crashes:
                    assert x.core_file and (central / x.core_file).is_file()
                    assert x.exe_file and x.exe_file.startswith(str(central / "files" / "sha256"))
                    assert x.sysroot and x.sysroot.startswith(str(central / "spool"))
                    assert not (central / "spool" / x.bundle_id / "core.zst").exists()
                admin = Client(url)
                assert admin.login("root", "pw-root-1").status == 302
                got = admin.get(f"/crashes/{c.id}/core")
                assert got.status == 200
                assert zstandard.ZstdDecompressor().stream_reader(got.body).read(4) == b"\x7fELF"
                # the workers' token is for /worker/v1 only; a host's or none is refused there
                assert Client(url).get("/api/v1/groups", headers={"Authorization": f"Bearer {token}"}
                                       ).status == 401
                bid = c.bundle_id
                for bearer in (host_token, "", "x" * 43):
                    answer = Client(url).get(f"/worker/v1/bundles/{bid}", headers={"Authorization": f"Bearer {bearer}"})
                    assert answer.status == 401 and "\n" not in answer.json()["error"]
                assert Client(url).get(f"/worker/v1/bundles/{bid}",
                                       headers={"Authorization": f"Bearer {token}"}).status == 200
            (third,) = finished_bundles(central / "spool")
            started = worker_log.read_bytes().count(b"ready.")
            worker = start()
            wait_for(lambda: "Retry in" in worker_log.read_text(), "the worker finding the central server away", 60)
            with web_server(central, tmp_path / "web-again.log", port=port):  # it offers the bundle again too
                wait_crashes(central, 3, alive=[worker])
                wait_for(lambda: _done_centrally(central) == 3, "the third central bundle marked done", 60)
                # both messages of that bundle ran (the retried one, the server's new offer): one record
                wait_for(lambda: worker_log.read_text().count(f"'bundle': '{third.name}'") >= 2,
                         "both deliveries of the third bundle", 60)
            assert len(central_crashes(central)) == 3
            assert [p for p in (elsewhere / "fetched").iterdir() if not p.name.startswith(".")] == []
            # gdb on the central side, on the core and executable the remote worker analyzed
            out = subprocess.run([str(COMMAND), "--data-dir", str(central), "gdb", c.id, "-batch", "-ex", "bt"],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert "main" in out.stdout and "SIGSEGV" in out.stdout, out.stdout
    finally:
        _stop(worker)
        stop(redis)


def _stop(worker) -> None:
    if worker is not None and worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown; its pool and alert sender follow it
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
