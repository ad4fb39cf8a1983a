"""The web UI through Flask's test client, on crashes from real cores."""

import re

import pytest

from coretriage.ingest import ingest
from coretriage.records import Analyzed, CrashRecord
from webui import create_app
from coretriage.users import hash_password, new_token, token_hash


@pytest.fixture
def app(config, store, samples):
    app = create_app({"CORETRIAGE": config, "TESTING": True})
    s = app.extensions["store"]
    s.add_user("ann", hash_password("viewer-pass"), "viewer")
    s.add_user("root", hash_password("admin-pass"), "admin")
    for name in ("segv", "double_free"):
        sample = samples(name)
        ingest(config, s, sample.core, sample.exe, meta={"host": "web-1", "image": "shop:1.2",
                                                          "container": "shop-api"})
    return app


def login(client, user, password):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"username": user, "password": password, "csrf_token": token})


def csrf(client, path):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def test_nothing_without_login(app):
    c = app.test_client()
    assert c.get("/").status_code == 302 and "/login" in c.get("/").headers["Location"]
    assert c.get("/api/v1/groups").status_code == 401
    assert c.get("/crashes/c000000000000").status_code == 302


def test_wrong_password(app):
    c = app.test_client()
    assert "Wrong user name or password" in login(c, "ann", "nope").text


def test_group_list_filters_and_search(app):
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    page = c.get("/").text
    assert "header_length" in page and "session_release" in page and "web-1" in page
    assert "<svg" in page
    only = c.get("/?q=session_release").text
    assert "session_release" in only and "header_length" not in only
    assert "No crash groups" in c.get("/?host=other-host").text
    assert "header_length" in c.get("/?image=shop:1.2&signal=SIGSEGV&sort=count&since=7d").text
    assert c.get("/?sort=bogus").status_code == 400
    assert "2 match" in c.get("/?q=main").text and "page 1 of 1" in c.get("/?q=main").text
    assert c.get("/?since=yesterday").status_code == 400


def test_group_and_crash_pages(app):
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    group = re.search(r'href="/groups/(\d+)"', c.get("/?q=session_release").text).group(1)
    page = c.get(f"/groups/{group}").text
    assert "How the signature was made" in page and "raise" in page and 'class="key"' in page
    crash = re.search(r'href="/crashes/(c[0-9a-f]{12})"', page).group(1)
    page = c.get(f"/crashes/{crash}").text
    assert "free(): double free detected in tcache 2" in page
    assert "Registers" in page and "rip" in page and "Modules" in page
    assert "download core" not in page  # viewers cannot
    assert c.get(f"/crashes/{crash}/core").status_code == 403
    assert c.get(f"/export/{crash}?format=markdown").text.startswith(f"### Crash `{crash}`")


def test_crash_page_and_api_say_which_core(app, config, samples, tmp_path):
    """A crash analyzed from its stack-only core: the page says so and why,
    the API gives core_kind and core_size; one from a full core says full."""
    from builders import stack_core

    sample = samples("thread")
    core = stack_core(sample.core, tmp_path / "stack.core")
    why = "stack-only core (stacks, registers, written data of the mapped files): rate limit: 1 cores"
    s = app.extensions["store"]
    done = ingest(config, s, core, sample.exe, meta={"core_kind": "stack", "core_size": core.stat().st_size,
                                                     "core_kind_reason": why})
    token = new_token()
    s.add_token("ann", token_hash(token))
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    page = c.get(f"/crashes/{done.crash.id}").text
    assert "core-stack" in page and why in page and "handle_job" in page
    h = {"Authorization": f"Bearer {token}"}
    got = c.get(f"/api/v1/crashes/{done.crash.id}", headers=h).get_json()
    assert (got["core_kind"], got["core_size"]) == ("stack", core.stat().st_size)
    assert got["signature"] == sample.expected_signature
    other = c.get(f"/api/v1/groups/{c.get('/api/v1/groups?q=session_release', headers=h).get_json()['groups'][0]['group_id']}",
                  headers=h).get_json()["crashes"][0]["crash_id"]
    got = c.get(f"/api/v1/crashes/{other}", headers=h).get_json()
    assert got["core_kind"] == "full" and got["core_size"] == 0  # stored before sizes were known
    assert "core-full" in c.get(f"/crashes/{other}").text


def test_state_change_needs_csrf(app):
    c = app.test_client()
    login(c, "root", "admin-pass")
    group = re.search(r'href="/groups/(\d+)"', c.get("/").text).group(1)
    assert c.post(f"/groups/{group}/state", data={"state": "acknowledged"}).status_code == 400
    token = csrf(c, f"/groups/{group}")
    r = c.post(f"/groups/{group}/state", data={"state": "resolved", "note": "fixed in 1.3", "csrf_token": token})
    assert r.status_code == 302
    assert "fixed in 1.3" in c.get(f"/groups/{group}").text
    assert app.extensions["store"].group(int(group)).state == "resolved"


def test_viewer_cannot_change_state(app):
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    group = re.search(r'href="/groups/(\d+)"', c.get("/").text).group(1)
    page = c.get(f"/groups/{group}").text
    assert "Set state" not in page
    r = c.post(f"/groups/{group}/state", data={"state": "ignored", "note": "x", "csrf_token": csrf(c, "/")})
    assert r.status_code == 403
    assert app.extensions["store"].group(int(group)).state == "new"


def test_alerts_page_for_admins_only(app):
    from coretriage.alerts import Channel

    s = app.extensions["store"]
    s.add_channel(Channel("slack", "webhook", "https://hooks.slack.example/services/T0/B0/XSECRETX", secret="k"))
    s.add_channel(Channel("ops", "email", "ops@example.org", events=("new",), host="web-*"))
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    assert c.get("/alerts").status_code == 403 and "/alerts" not in c.get("/").text
    c = app.test_client()
    login(c, "root", "admin-pass")
    assert 'href="/alerts"' in c.get("/").text
    page = c.get("/alerts").text
    assert "slack" in page and "https://hooks.slack.example/" in page and "ops@example.org" in page
    assert "XSECRETX" not in page and "host=web-*" in page
    assert page.count("<tr><td>new</td>") == 2 and "pending" in page  # the two groups' `new` events


def test_admin_downloads_core(app):
    c = app.test_client()
    login(c, "root", "admin-pass")
    crash = re.search(r'href="/crashes/(c[0-9a-f]{12})"', c.get("/groups/1").text).group(1)
    assert "download core" in c.get(f"/crashes/{crash}").text
    r = c.get(f"/crashes/{crash}/core")
    assert r.status_code == 200 and r.data[:4] == b"\x28\xb5\x2f\xfd"  # zstd magic


def test_a_list_counts_its_groups_only_so_far(app, monkeypatch):
    import webui.groups

    monkeypatch.setattr(webui.groups, "COUNT_LIMIT", 1)  # the page and one past it: 2 of the 2 groups
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    for path in ("/?q=main&limit=1", "/?limit=1"):
        page = c.get(path).text
        assert "2+ match" in page and "page 1 of 2+" in page and "older &rarr;" in page
    assert "2 match" in c.get("/?q=main").text  # the last page: counted exactly
    token = new_token()
    app.extensions["store"].add_token("ann", token_hash(token))
    h = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/v1/groups?q=main&limit=1", headers=h).get_json()["total_exact"] is False
    assert c.get("/api/v1/groups?q=main&limit=5", headers=h).get_json()["total_exact"] is True


def test_api_with_token(app):
    s = app.extensions["store"]
    token = new_token()
    s.add_token("ann", token_hash(token))
    c = app.test_client()
    h = {"Authorization": f"Bearer {token}"}
    groups = c.get("/api/v1/groups?sort=count", headers=h).get_json()
    assert groups["total"] == 2 and groups["groups"][0]["daily_counts"]
    ref = groups["groups"][0]["group_id"]
    one = c.get(f"/api/v1/groups/{ref}", headers=h).get_json()
    crash = one["crashes"][0]["crash_id"]
    full = c.get(f"/api/v1/crashes/{crash}", headers=h).get_json()
    assert full["crash_id"] == crash and full["analysis"]["threads"]
    assert c.get(f"/api/v1/export/{ref}?format=json", headers=h).get_json()["group_id"] == ref
    assert c.get("/api/v1/groups", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/v1/crashes/cffffffffffff", headers=h).get_json() == {"error": "no crash cffffffffffff"}
    spec = c.get("/api/v1/openapi.json", headers=h).get_json()
    assert spec["openapi"].startswith("3.") and "/api/v1/groups" in spec["paths"]


def test_core_content_is_escaped(app, config):
    """A function name, path or environment value from a core is text, never markup."""
    s = app.extensions["store"]
    hostile = "<script>alert(1)</script>"
    s.add_crash(CrashRecord(
        id="c0123456789ab", crashed_at=1.0, meta={"environ": {"X": hostile}},
        analyzed=Analyzed(signature=f"{hostile} | main", signature_data={"text": hostile},
                          analysis={"core": "x", "executable": f"/tmp/{hostile}",
                                    "threads": [{"number": 1, "lwp": 1, "crashed": True,
                                                 "frames": [{"index": 0, "pc": 1, "function": hostile}]}]},
                          executable=f"/tmp/{hostile}", signal="SIGSEGV", quality=1.0,
                          key_frame=hostile, search_text=hostile)))
    c = app.test_client()
    login(c, "ann", "viewer-pass")
    for path in ("/", "/crashes/c0123456789ab", f"/groups/{s.crash('c0123456789ab').group_id}"):
        page = c.get(path).text
        assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_login_redirect_is_local_only(app):
    c = app.test_client()
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/login?next=//evil.example/x", data={"username": "ann", "password": "viewer-pass",
                                                      "csrf_token": token})
    assert r.headers["Location"] == "/"
