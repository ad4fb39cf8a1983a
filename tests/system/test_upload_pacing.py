"""How a host's uploads are paced (issue 9): bounded in bandwidth and in
concurrency by its settings, and a server that answers 503 pauses the whole
queue once instead of each bundle trying on its own. A real central web
server over HTTP, real bundles of real cores, the collector's own Uploader."""

from __future__ import annotations

import logging
import re
import time
import uuid

from collector import spool
from collector.upload import Uploader, UploadSettings
from collector.watch import import_dump
from uploadkit import add_host, wait_crashes
from waiting import wait_for
from webserver import web_server


def _bundles(samples, tmp_path, host, n: int) -> list:
    (host / "spool").mkdir(mode=0o700, parents=True, exist_ok=True)
    out = []
    for i in range(n):  # distinct crashes: one core's bytes are one crash
        copy = tmp_path / f"core-{uuid.uuid4().hex[:8]}"
        copy.write_bytes(samples("segv", i).core.read_bytes())
        out.append(import_dump(copy, host / "spool"))
    return out


def _bundle_requests(web_log) -> list[tuple[str, str]]:
    """(method, bundle id) of every request about a bundle, in order."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", web_log.read_text())  # the dev server colours what is not a 200
    return re.findall(r'"(PATCH|POST|GET) /ingest/v1/bundles/([0-9a-f-]+)/', text)


def test_uploads_keep_to_upload_bandwidth_and_upload_concurrency(samples, tmp_path):
    central, host = tmp_path / "central", tmp_path / "host"
    token = add_host(central, "slow-link")
    bundles = _bundles(samples, tmp_path, host, 2)
    sent = sum((b / "core.zst").stat().st_size for b in bundles)
    rate = 8192
    web_log = tmp_path / "web.log"
    with web_server(central, web_log) as url:
        started = time.monotonic()
        uploader = Uploader(UploadSettings(url=url, token=token, data_dir=host, bandwidth=rate, concurrency=1))
        try:
            for b in bundles:
                uploader.submit(b)
            wait_for(lambda: all(spool.is_done(b) for b in bundles), "both bundles uploaded", 60)
            took = time.monotonic() - started
            wait_crashes(central, 2)
        finally:
            uploader.close()
    # the token bucket lets at most rate/4 bytes through ahead of the rate
    assert took >= (sent - rate / 4) / rate, (took, sent)
    # one upload at a time: every request of the first bundle before any of the second
    order = [bid for _, bid in _bundle_requests(web_log)]
    runs = [bid for i, bid in enumerate(order) if i == 0 or order[i - 1] != bid]
    assert sorted(runs) == sorted(b.name for b in bundles), order


def test_a_server_answering_503_pauses_the_whole_queue_once(samples, tmp_path, caplog):
    central, host = tmp_path / "central", tmp_path / "host"
    central.mkdir(mode=0o700)
    (central / "coretriage.toml").write_text("ingest_backlog = 0\n")  # every commit: 503, Retry-After 30
    token = add_host(central, "busy-1")
    bundles = _bundles(samples, tmp_path, host, 5)
    web_log = tmp_path / "web.log"
    caplog.set_level(logging.WARNING, logger="coretriage.upload")
    with web_server(central, web_log) as url:
        uploader = Uploader(UploadSettings(url=url, token=token, data_dir=host, concurrency=2))
        try:
            for b in bundles:
                uploader.submit(b)
            wait_for(lambda: "paused" in caplog.text, "the queue paused", 30)
            time.sleep(6)  # without the one gate, each bundle would commit again and again meanwhile
            assert uploader.gate.closed
        finally:
            uploader.close()
    commits = [r for r in _bundle_requests(web_log) if r[0] == "POST"]  # the log, whole once the server stopped
    assert 1 <= len(commits) <= 2, commits  # the bundles in flight when the first 503 came; the rest waited
    pauses = re.findall(r"paused (\d+) s", caplog.text)
    assert pauses and all(int(p) >= 29 for p in pauses), caplog.text  # the server's Retry-After
    for b in bundles:  # nothing lost: every bundle still here, whole, not done
        assert (b / "core.zst").is_file() and not spool.is_done(b)
