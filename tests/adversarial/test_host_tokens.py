"""Host tokens and hostile uploads, against the real web server over HTTP.

A host token uploads and sends heartbeats, nothing else: it reads no group,
crash, core or user and changes nothing (401/403 everywhere outside
/ingest/v1); a user's token or session cannot upload. The name a crash is
recorded under comes from the token, never from meta.json. A revoked token
is refused at once. A lying meta.json, a wrong hash, a zip bomb, an oversize
part and path tricks in files.json are each refused with one line of JSON,
and nothing of them is stored.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import zstandard

from collector.bundle import BundleMeta
from collector.upload import Uploader, UploadSettings
from uploadkit import add_host, central_crashes
from webclient import Client, write_settings
from webserver import add_user, cli, web_server

SAMPLE = Path(__file__).resolve().parents[2] / "sample-cores" / "bundles" / "musl-memcpy"
CORE = (SAMPLE / "core.zst").read_bytes()
CORE_SIZE = len(zstandard.ZstdDecompressor().stream_reader(CORE).read())
EXE = (SAMPLE / "musl-memcpy").read_bytes()
ADMIN, ADMIN_PW = "boss", "admin-password-9"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def call(url: str, method: str, path: str, token: str | None = None, body: bytes | None = None,
         headers: dict | None = None, js=None):
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if js is not None:
        body = json.dumps(js).encode()
        sent["Content-Type"] = "application/json"
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=sent)
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    return r.status, answer, r


def one_line(answer) -> str:
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    return answer["error"]


def make_bundle(spool: Path, bid: str, hostname: str = "liar.example", **meta_changes) -> Path:
    """A finished bundle as the handler would write it: the sample's real
    core, its executable as the one captured file."""
    b = spool / bid
    (b / "root" / "opt" / "app").mkdir(parents=True)
    (b / "core.zst").write_bytes(CORE)
    (b / "root" / "opt" / "app" / "musl-memcpy").write_bytes(EXE)
    (b / "files.json").write_text(json.dumps({"schema": 1, "files": [
        {"path": "/opt/app/musl-memcpy", "sha256": sha(EXE), "build_id": None, "size": len(EXE)}]}))
    values = dict(id=bid, pid=4242, signal=11, crash_time=int(bid.split("-")[0]), host_time=time.time(),
                  hostname=hostname, exe="/opt/app/musl-memcpy", core_file="core.zst", core_size=CORE_SIZE)
    values.update(meta_changes)
    (b / "meta.json").write_text(BundleMeta(**values).to_json())
    return b


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hosttokens")
    central = root / "central"
    central.mkdir(mode=0o700)
    write_settings(central, ingest_max_core=64 << 20, ingest_min_free=0)
    add_user(central, ADMIN, "admin", ADMIN_PW)
    tokens = {name: add_host(central, name) for name in ("host-a", "host-b", "host-c")}
    user_token = cli(central, "token", "add", ADMIN).strip().splitlines()[-1]
    with web_server(central, root / "web.log") as url:
        # one real crash from host-a, so there is something to read
        spool = root / "host-a" / "spool"
        spool.mkdir(parents=True)
        bundle = make_bundle(spool, "1795618979-4242-0badf00d", hostname="host-b")
        up = Uploader(UploadSettings(url=url, token=tokens["host-a"], data_dir=root / "host-a"))
        up.upload(bundle)
        deadline = time.monotonic() + 120
        while not central_crashes(central):
            assert time.monotonic() < deadline, "the sample crash was not analyzed centrally"
            time.sleep(0.3)
        yield {"url": url, "central": central, "tokens": tokens, "user_token": user_token, "root": root,
               "crash": central_crashes(central)[0]}


def test_the_name_comes_from_the_token_not_from_meta(site):
    c = site["crash"]
    assert c.host == "host-a"  # meta.json said host-b
    assert c.meta["claimed_hostname"] == "host-b" and c.meta["uploaded_by"] == "host-a"


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/groups"), ("GET", "/api/v1/groups/g1"), ("GET", "/api/v1/crashes/{crash}"),
    ("GET", "/api/v1/export/{crash}"), ("GET", "/api/v1/openapi.json"), ("POST", "/api/v1/groups/g1/state"),
    ("GET", "/"), ("GET", "/groups/1"), ("GET", "/crashes/{crash}"), ("GET", "/crashes/{crash}/core"),
    ("GET", "/export/{crash}"), ("GET", "/hosts"), ("GET", "/alerts"),
])
def test_a_host_token_reads_nothing(site, method, path):
    path = path.format(crash=site["crash"].id)
    status, answer, r = call(site["url"], method, path, site["tokens"]["host-a"],
                             js={"state": "ignored"} if method == "POST" else None)
    assert status in (401, 403), (path, status)
    assert b"musl" not in json.dumps(answer).encode() if answer else True
    # and the same request with an admin's token works: the route exists
    if method == "GET":
        ok, _, _ = call(site["url"], method, path, site["user_token"])
        assert ok == 200, (path, ok)


def test_users_cannot_upload(site):
    for token in (site["user_token"], None):
        status, answer, _ = call(site["url"], "POST", "/ingest/v1/heartbeat", token, js={"waiting": 0})
        assert status == 401 and one_line(answer)
    admin = Client(site["url"])
    assert admin.login(ADMIN, ADMIN_PW).status == 302
    r = admin.request("POST", "/ingest/v1/heartbeat", json={"waiting": 0})  # with the session cookie
    assert r.status == 401


def test_a_revoked_token_is_refused_at_once(site):
    token = site["tokens"]["host-c"]
    assert call(site["url"], "POST", "/ingest/v1/heartbeat", token, js={"waiting": 1})[0] == 200
    cli(site["central"], "host", "revoke", "host-c")
    status, answer, _ = call(site["url"], "POST", "/ingest/v1/heartbeat", token, js={"waiting": 1})
    assert status == 401 and one_line(answer)
    status, _, _ = call(site["url"], "POST", "/ingest/v1/files/missing", token, js={"sha256": []})
    assert status == 401


def test_a_malformed_heartbeat_is_refused(site):
    token = site["tokens"]["host-b"]
    for body in (b"not json", json.dumps([1]).encode(), json.dumps({"waiting": -1}).encode(),
                 json.dumps({"spool_bytes": "many"}).encode(), json.dumps({"rm": True}).encode()):
        status, answer, _ = call(site["url"], "POST", "/ingest/v1/heartbeat", token, body=body,
                                 headers={"Content-Type": "application/json"})
        assert status == 400, body
        one_line(answer)


def _stored(central: Path) -> set[str]:
    out = set()
    for top in ("spool", "files"):
        for dirpath, _, names in os.walk(central / top):
            out.update(os.path.join(dirpath, n) for n in names)
    return out


def _put(url, token, path, data: bytes, offset=0, total=None):
    total = len(data) + offset if total is None else total
    return call(url, "PATCH", path, token, body=data,
                headers={"Upload-Offset": str(offset), "Upload-Length": str(total)})


def _commit(url, token, bid, meta, parts=None, files=None):
    return call(url, "POST", f"/ingest/v1/bundles/{bid}/commit", token,
                js={"meta": meta, "parts": parts or {}, "files": files})


def _meta(bid, **changes):
    values = dict(id=bid, pid=77, signal=11, crash_time=int(bid.split("-")[0]), host_time=time.time(),
                  hostname="x", core_file="core.zst", core_size=CORE_SIZE)
    values.update(changes)
    return BundleMeta(**values).to_dict()


def test_hostile_commits_are_refused_and_nothing_is_stored(site):
    url, token, central = site["url"], site["tokens"]["host-b"], site["central"]
    bid = "1795619000-77-00c0ffee"
    assert _put(url, token, f"/ingest/v1/bundles/{bid}/parts/core.zst", CORE)[0] == 200
    good = {"core.zst": {"sha256": sha(CORE), "size": len(CORE)}}
    before = _stored(central)
    cases = {
        "meta of another bundle": (_meta("1795619000-78-00c0ffee"), good, None),
        "meta names no core but one was sent": (_meta(bid, core_file=None), good, None),
        "meta names a core that was not sent": (_meta(bid), {}, None),
        "meta says a smaller core": (_meta(bid, core_size=1000), good, None),
        "meta that is not a bundle's": ({"id": bid, "pid": "seven"}, good, None),
        "wrong hash": (_meta(bid), {"core.zst": {"sha256": sha(b"other"), "size": len(CORE)}}, None),
        "wrong size": (_meta(bid), {"core.zst": {"sha256": sha(CORE), "size": len(CORE) + 1}}, None),
        "a part name that is a path": (_meta(bid), {"../core.zst": good["core.zst"]}, None),
    }
    for path in ("/../../etc/passwd", "relative/lib.so", "/a/./b", "/a//b", "/a/b/..", "/a\0b", ""):
        cases[f"files.json path {path!r}"] = (_meta(bid), good, {"files": [{"path": path, "sha256": sha(EXE)}]})
    for what, (meta, parts, files) in cases.items():
        status, answer, _ = _commit(url, token, bid, meta, parts, files)
        assert status in (400, 409, 413), (what, status, answer)
        one_line(answer)
        if what == "wrong hash":
            # the part is gone (it was not what was promised): send it again
            assert _put(url, token, f"/ingest/v1/bundles/{bid}/parts/core.zst", CORE)[0] == 200
    assert _stored(central) == before, "a refused commit left something in the spool or the file store"
    assert not (central / "spool" / bid).exists()


def test_a_zip_bomb_is_refused(site):
    url, token, central = site["url"], site["tokens"]["host-b"], site["central"]
    bid = "1795619001-79-0000b0b0"
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (48 << 20))  # 48 MiB in a few KiB
    assert len(bomb) < 64 << 10
    assert _put(url, token, f"/ingest/v1/bundles/{bid}/parts/core.zst", bomb)[0] == 200
    status, answer, _ = _commit(url, token, bid, _meta(bid, core_size=4 << 20),
                                {"core.zst": {"sha256": sha(bomb), "size": len(bomb)}})
    assert status == 400 and "decompresses to more" in one_line(answer)
    assert not (central / "spool" / bid).exists()


def test_oversize_and_lying_uploads(site):
    url, token, central = site["url"], site["tokens"]["host-b"], site["central"]
    bid = "1795619002-80-0000abcd"
    status, answer, _ = _put(url, token, f"/ingest/v1/bundles/{bid}/parts/core.zst", b"x", total=(64 << 20) + 1)
    assert status == 413 and one_line(answer)
    # a file whose bytes are not its name's hash: refused, not stored
    fake = b"not the file you asked for"
    status, answer, _ = _put(url, token, f"/ingest/v1/files/{sha(EXE)[:-4]}0000", fake)
    assert status == 400 and one_line(answer)
    assert not (central / "files" / "sha256" / f"{sha(EXE)[:-4]}0000").exists()
    # a resumed upload at the wrong offset is told where to resume
    assert _put(url, token, f"/ingest/v1/bundles/{bid}/parts/core.zst", CORE[:100], total=len(CORE))[0] == 200
    status, answer, _ = _put(url, token, f"/ingest/v1/bundles/{bid}/parts/core.zst", CORE[500:], offset=500,
                             total=len(CORE))
    assert status == 409 and answer["offset"] == 100
    for bad in ("../../etc", "1795619002-80-0000abcd.x", "x" * 30):
        status, answer, _ = call(url, "GET", f"/ingest/v1/bundles/{bad}/parts/core.zst", token)
        assert status in (400, 403, 404), bad  # refused, whether routed here or not


def test_one_host_cannot_take_another_hosts_bundle(site):
    url, central = site["url"], site["central"]
    bid = "1795618979-4242-0badf00d"  # host-a's, stored
    meta = json.loads((central / "spool" / bid / "meta.json").read_text())
    status, answer, _ = _commit(url, site["tokens"]["host-b"], bid, meta)
    assert status == 409 and "another host" in one_line(answer)
    status, answer, _ = call(url, "GET", f"/ingest/v1/bundles/{bid}/parts/core.zst", site["tokens"]["host-b"])
    assert status == 409
    # host-a repeating its commit is an idempotent success
    status, answer, _ = _commit(url, site["tokens"]["host-a"], bid, meta)
    assert status == 200 and answer["new"] is False
    assert len(central_crashes(central)) == 1
