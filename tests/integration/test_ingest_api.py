"""The ingest API's answers that ask a host to wait (429, 503) and the
heartbeat it stores, through Flask's test client on a real store; the
uploads themselves run against the real server (tests/system/test_upload.py,
tests/adversarial/test_host_tokens.py)."""

import dataclasses

import pytest

from coretriage.hosts import new_host_token
from coretriage.users import token_hash
from webui import create_app


@pytest.fixture
def host(config, store):
    token = new_host_token()
    store.add_host("h1", token_hash(token))
    return {"Authorization": f"Bearer {token}"}


def test_a_heartbeat_is_stored_on_the_hosts_row(config, store, host):
    client = create_app({"CORETRIAGE": config, "TESTING": True}).test_client()
    r = client.post("/ingest/v1/heartbeat", json={"version": "9.9", "waiting": 3, "last_crash_at": 1234.5},
                    headers=host)
    assert r.status_code == 200 and r.json["host"] == "h1"
    (row,) = store.hosts()
    assert row.report["waiting"] == 3 and row.last_heartbeat and row.last_crash_at == 1234.5


def test_a_commit_waits_when_the_analysis_is_behind(config, store, host):
    app = create_app({"CORETRIAGE": dataclasses.replace(config, ingest_backlog=0), "TESTING": True})
    r = app.test_client().post("/ingest/v1/bundles/1795619000-7-00c0ffee/commit", json={}, headers=host)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0 and "\n" not in r.json["error"]


def test_too_many_uploads_of_one_host_at_once(config, store, host):
    from webui import ingest

    client = create_app({"CORETRIAGE": config, "TESTING": True}).test_client()
    ingest._busy["h1"] = ingest.PER_HOST  # as many transfers under way as allowed
    try:
        r = client.patch("/ingest/v1/files/" + "a" * 64, data=b"x",
                         headers={**host, "Upload-Offset": "0", "Upload-Length": "1"})
    finally:
        ingest._busy["h1"] = 0
    assert r.status_code == 429 and r.headers["Retry-After"]


def test_no_room_is_507_and_leaves_nothing(config, store, host):
    app = create_app({"CORETRIAGE": dataclasses.replace(config, ingest_min_free=1 << 60), "TESTING": True})
    r = app.test_client().patch("/ingest/v1/files/" + "a" * 64, data=b"x",
                                headers={**host, "Upload-Offset": "0", "Upload-Length": "1"})
    assert r.status_code == 507 and r.headers["Retry-After"]
    assert not list((config.data_dir / "ingest").rglob("*.part"))


def test_partial_uploads_left_for_a_week_are_swept(config, store):
    import os
    import time

    from coretriage.receive import Receiver

    old = config.data_dir / "ingest" / "h1" / "bundles" / "1795619000-7-00c0ffee"
    new = config.data_dir / "ingest" / "h1" / "files" / ("b" * 64 + ".part")
    old.mkdir(parents=True)
    new.parent.mkdir(parents=True)
    (old / "core.zst").write_bytes(b"x")
    new.write_bytes(b"y")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    assert Receiver(config).sweep() == 1
    assert not old.exists() and new.exists()


def test_the_worker_api_is_off_without_worker_token_and_takes_only_that_token(config, store, host, tmp_path):
    from coretriage.config import ConfigError, load_config

    off = create_app({"CORETRIAGE": config, "TESTING": True}).test_client()
    r = off.get("/worker/v1/bundles/1795619000-7-00c0ffee", headers={"Authorization": "Bearer " + "w" * 32})
    assert r.status_code == 404 and "worker_token" in r.json["error"]
    on = create_app({"CORETRIAGE": dataclasses.replace(config, worker_token="w" * 32), "TESTING": True}).test_client()
    for headers in (host, {}, {"Authorization": "Bearer " + "w" * 31}):
        r = on.get("/worker/v1/files/" + "0" * 64, headers=headers)
        assert r.status_code == 401 and "\n" not in r.json["error"]
    worker = {"Authorization": "Bearer " + "w" * 32}
    assert on.get("/worker/v1/files/" + "0" * 64, headers=worker).status_code == 404
    assert on.get("/worker/v1/bundles/..%2f..%2fcoretriage.db", headers=worker).status_code in (401, 404)
    assert on.get("/worker/v1/bundles/1795619000-7-00c0ffee/meta.json", headers=worker).status_code == 404
    assert on.post("/worker/v1/bundles/1795619000-7-00c0ffee/done", headers=worker).status_code == 409
    assert on.get("/api/v1/groups", headers=worker).status_code == 401  # no user's token
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "coretriage.toml").write_text('worker_token = "guessable"\n')
    with pytest.raises(ConfigError, match="worker_token must have at least 24 characters"):
        load_config(tmp_path / "short")


def test_the_hosts_page_and_host_list_show_every_field_of_a_heartbeat(config, store, host):
    import re

    from coretriage.hosts import format_hosts
    from coretriage.users import hash_password

    store.add_user("ops", hash_password("ops-password-1"), "admin")
    client = create_app({"CORETRIAGE": config, "TESTING": True}).test_client()
    r = client.post("/ingest/v1/heartbeat", headers=host, json={
        "version": "7.7.7", "core_pattern_ours": False, "core_pattern": "|/usr/share/apport/apport %p",
        "doctor": [{"name": "core_pattern", "status": "FAIL", "message": "apport owns it"},
                   {"name": "spool", "status": "OK", "message": ""}],
        "spool_bytes": 3 << 20, "waiting": 4, "last_crash_at": 1795619000.0})
    assert r.status_code == 200
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert client.post("/login", data={"username": "ops", "password": "ops-password-1",
                                       "csrf_token": csrf}).status_code == 302
    text = client.get("/hosts").text
    row = text[text.index("<td>h1</td>"):].split("</tr>")[0]
    for shown in ("7.7.7", "replaced", "core_pattern: FAIL", "apport owns it", "3.0 MiB", "<td>4</td>",
                  "PATTERN REPLACED", "DOCTOR FAIL: core_pattern", "ago"):
        assert shown in row, (shown, row)
    listed = format_hosts(store.hosts()).splitlines()[1]
    for shown in ("h1", "7.7.7", "OTHER", "3.0 MiB", " 4 ", "PATTERN REPLACED", "DOCTOR FAIL: core_pattern"):
        assert shown in listed, (shown, listed)


def test_a_remote_worker_without_its_token_stops_at_once_in_one_line(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "worker"
    data.mkdir(mode=0o700)
    (data / "coretriage.toml").write_text('broker_url = "redis://127.0.0.1:1/0"\ncentral_url = "https://central"\n')
    done = subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data), "worker"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "coretriage: error: central_url is set but worker_token is not (the central server's worker_token)"]


def test_done_links_a_core_only_into_cores(config, store, tmp_path):
    """``done`` links the received core where the worker's record says; a
    record naming a path out of ``cores/`` (a worker that writes the shared
    database is trusted, not blindly) is refused, and nothing is linked."""
    from coretriage.records import Analyzed, CrashRecord

    bid = "1795619000-7-00c0ffee"
    bundle = config.spool_dir / bid
    bundle.mkdir(parents=True)
    (bundle / "core.zst").write_bytes(b"core bytes")
    (bundle / "meta.json").write_text("{}")
    store.add_crash(CrashRecord(
        id="c00000000beef", crashed_at=1.0, meta={"core_kind": "full"}, bundle_id=bid, core_file="../escaped",
        analyzed=Analyzed(signature="f | main", signature_data={"text": "f | main"}, analysis={"core": "x"},
                          executable="/x", signal="SIGSEGV", quality=1.0, key_frame="f", search_text="f")))
    on = create_app({"CORETRIAGE": dataclasses.replace(config, worker_token="w" * 32), "TESTING": True}).test_client()
    r = on.post(f"/worker/v1/bundles/{bid}/done", headers={"Authorization": "Bearer " + "w" * 32})
    assert r.status_code == 409 and "not cores/<name>" in r.json["error"], r.json
    assert not (config.data_dir.parent / "escaped").exists() and not (config.data_dir / "escaped").exists()
    assert (bundle / "core.zst").is_file() and not (bundle / "done").exists()
