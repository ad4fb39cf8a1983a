"""/alerts over HTTP on the real web server: admins add, edit, test and
remove channels with the CSRF token every form carries; viewers get 403 on
every route and change nothing; a webhook's path and secret never reach a page."""

from __future__ import annotations

import json

import pytest
from alertreceivers import Receiver

from coretriage.config import load_config
from coretriage.store import Store
from webclient import Client
from webserver import add_user, web_server


@pytest.fixture
def site(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Store(load_config(data).database_url).close()
    add_user(data, "vera", "viewer", "viewer-password-1")
    add_user(data, "adam", "admin", "admin-password-1")
    receiver = Receiver()
    try:
        with web_server(data, tmp_path / "web.log") as base:
            admin, viewer = Client(base), Client(base)
            assert admin.login("adam", "admin-password-1").status == 302
            assert viewer.login("vera", "viewer-password-1").status == 302
            yield data, admin, viewer, receiver
    finally:
        receiver.close()


def channels(data):
    store = Store(load_config(data).database_url)
    try:
        return {c.name: c for c in store.channels()}
    finally:
        store.close()


def test_admin_adds_edits_tests_and_removes_a_channel(site):
    data, admin, _, receiver = site
    url = receiver.url + "/T0/XSECRETPATH"
    form = {"name": "team", "kind": "webhook", "target": url, "secret": "k3y-secret", "event_new": "1",
            "event_spike": "1", "executable": "*/nginx", "quiet": "15m", "digest": "1h"}
    assert admin.post("/alerts/channels", form).status == 400  # no CSRF token
    assert channels(data) == {}
    r = admin.post("/alerts/channels", {**form, "csrf_token": admin.csrf("/alerts")})
    assert r.status == 302 and r.header("Location").endswith("/alerts")
    c = channels(data)["team"]
    assert (c.kind, c.target, c.secret, c.events, c.executable, c.quiet, c.digest) == \
        ("webhook", url, "k3y-secret", ("new", "spike"), "*/nginx", 900.0, 3600.0)
    page = admin.get("/alerts").text
    assert "Channel team added." in page and "team" in page and "3600 s" in page
    assert "XSECRETPATH" not in page and "k3y-secret" not in page and "http://127.0.0.1:" in page

    # a mistake is one line on the page, and nothing is saved
    bad = {"name": "x y", "kind": "email", "target": "ops@example.org", "event_new": "1"}
    admin.post("/alerts/channels", {**bad, "csrf_token": admin.csrf("/alerts")})
    assert "Not saved: a channel name is 1-64 letters" in admin.get("/alerts").text and "x y" not in channels(data)
    dup = {"name": "team", "kind": "email", "target": "ops@example.org", "event_new": "1"}
    admin.post("/alerts/channels", {**dup, "csrf_token": admin.csrf("/alerts")})
    assert channels(data)["team"].kind == "webhook"  # adding never overwrites: editing does

    # edit: the URL and secret stay unless retyped; the form shows neither
    edit_page = admin.get("/alerts?edit=team").text
    assert "Edit channel team" in edit_page and "XSECRETPATH" not in edit_page and "k3y-secret" not in edit_page
    r = admin.post("/alerts/channels", {"editing": "team", "name": "team", "kind": "webhook", "target": "",
                                        "secret": "", "event_regression": "1", "digest": "0",
                                        "csrf_token": admin.csrf("/alerts?edit=team")})
    assert r.status == 302
    c = channels(data)["team"]
    assert (c.target, c.secret, c.events, c.digest, c.executable) == (url, "k3y-secret", ("regression",), 0.0, None)

    # test: a real POST to the receiver
    r = admin.post("/alerts/channels/team/test", {"csrf_token": admin.csrf("/alerts")})
    assert r.status == 302 and "Test alert sent to team." in admin.get("/alerts").text
    (headers, body), = receiver.posts
    assert json.loads(body)["event"] == "test" and headers["X-Coretriage-Signature"].startswith("sha256=")

    assert admin.post("/alerts/channels/team/remove", {}).status == 400  # no CSRF token
    assert "team" in channels(data)
    assert admin.post("/alerts/channels/team/remove", {"csrf_token": admin.csrf("/alerts")}).status == 302
    assert channels(data) == {} and "Channel team removed." in admin.get("/alerts").text
    assert admin.post("/alerts/channels/team/remove", {"csrf_token": admin.csrf("/alerts")}).status == 404


def test_viewer_sees_nothing_and_changes_nothing(site):
    data, admin, viewer, receiver = site
    admin.post("/alerts/channels", {"name": "ops", "kind": "email", "target": "ops@example.org", "event_new": "1",
                                    "csrf_token": admin.csrf("/alerts")})
    assert "ops" in channels(data)
    assert viewer.get("/alerts").status == 403 and 'href="/alerts"' not in viewer.get("/").text
    token = viewer.csrf("/")  # a viewer's own, valid CSRF token
    for path, form in (("/alerts/channels", {"name": "mine", "kind": "webhook", "target": receiver.url,
                                             "event_new": "1"}),
                       ("/alerts/channels", {"editing": "ops", "name": "ops", "kind": "webhook",
                                             "target": receiver.url, "event_new": "1"}),
                       ("/alerts/channels/ops/test", {}), ("/alerts/channels/ops/remove", {})):
        assert viewer.post(path, {**form, "csrf_token": token}).status == 403, path
    c = channels(data)
    assert list(c) == ["ops"] and c["ops"].kind == "email" and receiver.posts == []
