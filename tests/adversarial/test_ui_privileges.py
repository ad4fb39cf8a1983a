"""Privilege escalation in the UI, against the real web server (``coretriage
web``) over HTTP, on crashes from real cores.

A viewer is read-only: no state or note change through the form or the API,
no core. A set-uid or non-dumpable crash (the kernel's dump mode 2, a
root-only core) shows a viewer only that it happened and why the rest is
hidden: no analysis on its page, in any export or through the API. Every
response carries the security headers, pages included that only an error
makes. Logins are throttled per user and per address (429 and Retry-After),
and an unknown user name answers as slowly as a wrong password.
"""

from __future__ import annotations

import re
import statistics
import time

import pytest

from webclient import Client, write_settings
from webserver import add_user, cli, web_server

VIEWER, VIEWER_PW = "ann", "viewer-password-1"
ADMIN, ADMIN_PW = "root-admin", "admin-password-1"
SECRET_ENV = "value-only-admins-may-see-31337"  # in the set-uid crash's environment


@pytest.fixture(scope="module")
def site(tmp_path_factory, samples):
    """Two real crashes: segv (an ordinary process) and double_free, stored as
    the kernel's dump mode 2 would have it (set-uid). Yields a dict of the
    base URL, data dir, ids, and viewer and admin clients and tokens."""
    from coretriage.config import load_config
    from coretriage.ingest import ingest
    from coretriage.store import Store

    root = tmp_path_factory.mktemp("privileges")
    config = load_config(root / "data")
    config.data_dir.mkdir(parents=True)
    store = Store(config.database_url)
    try:
        normal = ingest(config, store, samples("segv").core, samples("segv").exe,
                        meta={"host": "web-1", "dump_mode": 1})
        suid = ingest(config, store, samples("double_free").core, samples("double_free").exe,
                      meta={"host": "web-1", "dump_mode": 2, "uid": 1000, "environ": {"DEPLOY_LABEL": SECRET_ENV},
                            "cmdline": ["/usr/bin/passwd", "--stdin"]})
    finally:
        store.close()
    add_user(config.data_dir, VIEWER, "viewer", VIEWER_PW)
    add_user(config.data_dir, ADMIN, "admin", ADMIN_PW)
    with web_server(config.data_dir, root / "server.log") as base:
        viewer, admin = Client(base), Client(base)
        assert viewer.login(VIEWER, VIEWER_PW).status == 302 and admin.login(ADMIN, ADMIN_PW).status == 302
        yield {"base": base, "data": config.data_dir, "normal": (normal.crash.id, normal.crash.group_id),
               "suid": (suid.crash.id, suid.crash.group_id), "revealing": revealing(suid.analysis, suid.signature),
               "viewer": viewer, "admin": admin,
               "viewer_token": cli(config.data_dir, "token", "add", VIEWER).strip(),
               "admin_token": cli(config.data_dir, "token", "add", ADMIN).strip()}


def revealing(analysis, signature) -> list[str]:
    """What a set-uid crash's analysis holds beyond its group's signature:
    frames, registers, libraries, the abort message, argv and environment."""
    words = {analysis.abort_message, SECRET_ENV, "/usr/bin/passwd --stdin"}
    words |= {f.function for t in analysis.threads for f in t.frames if f.function} - set(signature.frames)
    words |= {value for _, value in analysis.registers if len(value) >= 10}
    words |= {m.path for m in analysis.modules if m.path != analysis.executable}
    words = {w for w in words if w and w not in signature.text}
    assert len(words) > 10
    return sorted(words)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def group_state(data, group_id: int):
    from coretriage.config import load_config
    from coretriage.store import Store

    store = Store(load_config(data).database_url)
    try:
        g = store.group(group_id)
        return g.state, g.note
    finally:
        store.close()


# -- viewers are read-only -----------------------------------------------------------------
def test_viewer_cannot_change_state_or_note(site):
    _, gid = site["normal"]
    before = group_state(site["data"], gid)
    viewer = site["viewer"]
    page = viewer.get(f"/groups/{gid}").text
    assert "Set state" not in page  # no form to offer
    form = {"state": "ignored", "note": "nothing to see", "csrf_token": viewer.csrf("/")}
    assert viewer.post(f"/groups/{gid}/state", form).status == 403  # the form, with a valid CSRF token
    token = bearer(site["viewer_token"])
    assert Client(site["base"]).post(f"/groups/{gid}/state", {"state": "ignored"}, headers=token).status == 403
    api = Client(site["base"]).request("POST", f"/api/v1/groups/g{gid}/state", json={"state": "ignored",
                                                                                     "note": "x"}, headers=token)
    assert api.status == 403 and api.json() == {"error": "only admins may do this"}
    as_browser = viewer.request("POST", f"/api/v1/groups/g{gid}/state", json={"state": "ignored"},
                                headers={"X-CSRF-Token": viewer.csrf("/")})
    assert as_browser.status == 403
    assert group_state(site["data"], gid) == before

    # an admin may, through both
    admin = site["admin"]
    r = admin.post(f"/groups/{gid}/state", {"state": "acknowledged", "note": "BILL-1", "csrf_token": admin.csrf("/")})
    assert r.status == 302 and group_state(site["data"], gid) == ("acknowledged", "BILL-1")
    r = Client(site["base"]).request("POST", f"/api/v1/groups/g{gid}/state", json={"state": "new", "note": ""},
                                     headers=bearer(site["admin_token"]))
    assert r.status == 200 and r.json()["state"] == "new" and group_state(site["data"], gid) == before


def test_viewer_cannot_download_a_core(site):
    crash, _ = site["normal"]
    assert site["viewer"].get(f"/crashes/{crash}/core").status == 403
    assert Client(site["base"]).get(f"/crashes/{crash}/core", headers=bearer(site["viewer_token"])).status == 403
    got = site["admin"].get(f"/crashes/{crash}/core")
    assert got.status == 200 and got.body[:4] == b"\x28\xb5\x2f\xfd"


# -- set-uid and non-dumpable crashes -----------------------------------------------------
def viewer_views(site) -> dict[str, str]:
    crash, gid = site["suid"]
    viewer, token = site["viewer"], bearer(site["viewer_token"])
    api = Client(site["base"])
    views = {"crash page": viewer.get(f"/crashes/{crash}"), "group page": viewer.get(f"/groups/{gid}")}
    for fmt in ("text", "markdown", "json"):
        views[f"export {fmt}"] = viewer.get(f"/export/{crash}?format={fmt}")
        views[f"group export {fmt}"] = viewer.get(f"/export/g{gid}?format={fmt}")
    views["api crash"] = api.get(f"/api/v1/crashes/{crash}", headers=token)
    views["api export"] = api.get(f"/api/v1/export/{crash}", headers=token)
    views["api group export"] = api.get(f"/api/v1/export/g{gid}?format=text", headers=token)
    assert {name: r.status for name, r in views.items()} == {name: 200 for name in views}
    return {name: r.text for name, r in views.items()}


def test_viewer_sees_a_setuid_crash_exists_but_not_its_analysis(site):
    from coretriage.access import RESTRICTED_REASON

    crash, gid = site["suid"]
    for name, text in viewer_views(site).items():
        leaked = [word for word in site["revealing"] if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)]
        assert not leaked, f"{name} shows a viewer {leaked}"
        assert crash in text, f"{name} does not say the crash exists"
        assert RESTRICTED_REASON in text, f"{name} does not say why"
    assert site["viewer"].get(f"/crashes/{crash}/core").status == 403
    assert site["viewer"].get("/").status == 200 and crash not in site["viewer"].get("/").text  # listed by group
    listing = site["viewer"].get(f"/groups/{gid}").text
    assert f'href="/crashes/{crash}"' in listing


def test_admin_sees_the_setuid_crash_in_full(site):
    from coretriage.access import RESTRICTED_REASON

    crash, _ = site["suid"]
    page = site["admin"].get(f"/crashes/{crash}").text
    assert "free(): double free detected" in page and "Registers" in page and SECRET_ENV in page
    assert RESTRICTED_REASON in page  # the admin is told viewers do not see it
    api = Client(site["base"]).get(f"/api/v1/crashes/{crash}", headers=bearer(site["admin_token"])).json()
    assert api["analysis"]["threads"] and api["meta"]["environ"]["DEPLOY_LABEL"] == SECRET_ENV


def test_ordinary_crash_is_shown_to_viewers(site):
    crash, _ = site["normal"]
    page = site["viewer"].get(f"/crashes/{crash}").text
    assert "header_length" in page and "Registers" in page and "root-only" not in page


# -- security headers ------------------------------------------------------------------------
HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}


def check_headers(r, what: str) -> None:
    for name, value in HEADERS.items():
        assert r.header(name) == value, f"{what}: {name} is {r.header(name)!r}"
    assert r.header("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin-when-cross-origin"), what
    csp = {d.split()[0]: d.split()[1:] for d in (r.header("Content-Security-Policy") or "").split(";") if d.strip()}
    assert csp.get("frame-ancestors") == ["'none'"], f"{what}: CSP {csp}"
    assert csp.get("default-src") == ["'none'"] and "script-src" not in csp, f"{what}: CSP {csp}"
    assert not any("'unsafe-inline'" in v or "'unsafe-eval'" in v for v in csp.values()), f"{what}: CSP {csp}"


def test_security_headers_on_every_response(site):
    crash, gid = site["normal"]
    anon, viewer = Client(site["base"]), site["viewer"]
    responses = {
        "login page": (anon.get("/login"), 200),
        "redirect to login": (anon.get("/"), 302),
        "static file": (anon.get("/static/style.css"), 200),
        "icon": (anon.get("/favicon.ico"), 200),
        "group list": (viewer.get("/"), 200),
        "group page": (viewer.get(f"/groups/{gid}"), 200),
        "crash page": (viewer.get(f"/crashes/{crash}"), 200),
        "text export": (viewer.get(f"/export/{crash}"), 200),
        "not found": (viewer.get("/no/such/page"), 404),
        "missing static": (anon.get("/static/nothing.css"), 404),
        "forbidden": (viewer.get(f"/crashes/{crash}/core"), 403),
        "csrf refused": (anon.post("/login", {"username": "x", "password": "y"}), 400),
        "wrong method": (anon.get("/logout"), 405),
        "api unauthorised": (anon.get("/api/v1/groups"), 401),
        "api json": (Client(site["base"]).get("/api/v1/groups", headers=bearer(site["viewer_token"])), 200),
    }
    for what, (r, status) in responses.items():
        assert r.status == status, f"{what}: {r.status}"
        check_headers(r, what)
    assert responses["wrong method"][0].header("Allow")


def test_pages_have_no_inline_script_or_style(site):
    """The CSP allows no inline script or style: the pages must need none."""
    crash, gid = site["normal"]
    viewer, admin = site["viewer"], site["admin"]
    pages = [Client(site["base"]).get("/login"), viewer.get("/"), viewer.get(f"/groups/{gid}"),
             viewer.get(f"/crashes/{crash}"), admin.get(f"/groups/{gid}"), admin.get(f"/crashes/{site['suid'][0]}"),
             viewer.get("/no/such/page")]
    for page in pages:
        html = page.text
        assert "<script" not in html and "<style" not in html
        assert not re.search(r"\sstyle\s*=", html), re.search(r".{40}\sstyle\s*=.{40}", html)
        assert not re.search(r"\son[a-z]+\s*=", html)
        assert "javascript:" not in html and 'src="data:' not in html and 'href="data:' not in html


# -- login throttle and user-name enumeration ----------------------------------------------
@pytest.fixture
def throttled(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, VIEWER, "viewer", VIEWER_PW)
    add_user(data, "bob", "viewer", "bob-password-1")
    with web_server(data, tmp_path / "server.log") as base:
        yield base


def attempt(base: str, user: str, password: str, headers: dict | None = None):
    c = Client(base)
    token = c.csrf("/login")
    return c.post("/login", {"username": user, "password": password, "csrf_token": token}, headers=headers)


def test_login_is_throttled_per_user(throttled):
    # the default limits: 5 failures per user name, 20 per address, in 15 minutes
    for _ in range(5):
        assert attempt(throttled, VIEWER, "guess").status == 200  # the form again
    r = attempt(throttled, VIEWER, VIEWER_PW)  # even the right password, now
    assert r.status == 429 and "Too many failed logins" in r.text
    assert 0 < int(r.header("Retry-After")) <= 900
    check_headers(r, "429")
    assert attempt(throttled, "bob", "bob-password-1").status == 302  # another user is not locked out


def test_login_is_throttled_per_address(throttled):
    # a different name each time, and a forged X-Forwarded-For: the address still counts
    for n in range(20):
        r = attempt(throttled, f"nobody{n}", "guess", headers={"X-Forwarded-For": f"10.0.0.{n}"})
        assert r.status == 200
    r = attempt(throttled, "bob", "bob-password-1", headers={"X-Forwarded-For": "10.9.9.9"})
    assert r.status == 429 and int(r.header("Retry-After")) > 0


def test_unknown_user_takes_as_long_as_a_wrong_password(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, VIEWER, "viewer", VIEWER_PW)
    write_settings(data, login_failures_per_user=1000, login_failures_per_address=1000)
    with web_server(data, tmp_path / "server.log") as base:
        c = Client(base)
        token = c.csrf("/login")

        def timed(user: str) -> float:
            start = time.perf_counter()
            r = c.post("/login", {"username": user, "password": "not-the-password", "csrf_token": token})
            elapsed = time.perf_counter() - start
            assert r.status == 200 and "Wrong user name or password" in r.text
            return elapsed

        timed("warm-up-unknown")
        timed(VIEWER)
        unknown, wrong = [], []
        for n in range(15):  # interleaved, so that load on the machine hits both alike
            unknown.append(timed(f"no-such-user-{n}"))
            wrong.append(timed(VIEWER))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    print(f"login: unknown user {statistics.median(unknown) * 1000:.1f} ms, wrong password "
          f"{statistics.median(wrong) * 1000:.1f} ms (median of 15), ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2, ratio
