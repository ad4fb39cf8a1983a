"""Session replay, against the real web server (``coretriage web``) over HTTP.

An attacker who copied a session cookie (a shared machine, a proxy log, a
stolen laptop) must lose it when its owner logs out, changes password or is
given another role, and once the session is idle or old; a CSRF token seen
before login must be worth nothing after it; a revoked or expired API token
is refused at once. The cookie carries only a random id (its hash is what
the database keeps), with HttpOnly, SameSite=Lax, and Secure over HTTPS.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time

import pytest

from webclient import CSRF, Client, write_settings
from webserver import add_user, cli, web_server

VIEWER, VIEWER_PW = "ann", "viewer-password-1"
ADMIN, ADMIN_PW = "root-admin", "admin-password-1"
SESSION = "coretriage_session"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server with default settings: (base URL, data dir)."""
    data = tmp_path_factory.mktemp("replay") / "data"
    data.mkdir()
    add_user(data, VIEWER, "viewer", VIEWER_PW)
    add_user(data, ADMIN, "admin", ADMIN_PW)
    with web_server(data, data.parent / "server.log") as base:
        yield base, data


def logged_in(base: str, user: str, password: str) -> Client:
    c = Client(base)
    r = c.login(user, password)
    assert r.status == 302 and r.header("Location") == "/", r.text
    assert c.get("/").status == 200
    return c


def replay(base: str, cookies: dict[str, str]) -> Client:
    """A second client holding nothing but a copy of a browser's cookies."""
    thief = Client(base)
    thief.cookies.update(cookies)
    return thief


def refused(thief: Client) -> bool:
    page = thief.get("/")
    api = thief.get("/api/v1/groups")
    return (page.status == 302 and page.header("Location").startswith("/login")) and api.status == 401


def test_cookie_replayed_after_logout_is_refused(site):
    base, _ = site
    c = logged_in(base, VIEWER, VIEWER_PW)
    stolen = dict(c.cookies)
    assert not refused(replay(base, stolen))  # a copy works while the session lives
    r = c.post("/logout", {"csrf_token": c.csrf("/")})
    assert r.status == 302 and r.header("Location") == "/login"
    assert SESSION not in c.cookies  # the browser is told to forget it ...
    assert refused(replay(base, stolen))  # ... and the server has forgotten it


def test_cookie_replayed_after_password_change_is_refused(site):
    base, data = site
    add_user(data, "pat", "viewer", "first-password-1")
    stolen = dict(logged_in(base, "pat", "first-password-1").cookies)
    other = dict(logged_in(base, "pat", "first-password-1").cookies)
    add_user(data, "pat", "viewer", "second-password-2")
    assert refused(replay(base, stolen)) and refused(replay(base, other))  # every session of the user
    assert not refused(logged_in(base, "pat", "second-password-2"))
    assert Client(base).login("pat", "first-password-1").status == 200  # the form again: wrong password


def test_cookie_replayed_after_role_change_is_refused(site):
    base, data = site
    add_user(data, "max", "admin", "max-password-1")
    admin = logged_in(base, "max", "max-password-1")
    stolen = dict(admin.cookies)
    bystander = logged_in(base, VIEWER, VIEWER_PW)  # another user's session is untouched
    add_user(data, "max", "viewer", "max-password-1")  # demoted, same password
    assert refused(replay(base, stolen))
    assert not refused(bystander)


def test_pre_login_csrf_token_is_refused_after_login(site):
    base, _ = site
    c = Client(base)
    before = c.csrf("/login")
    r = c.post("/login", {"username": VIEWER, "password": VIEWER_PW, "csrf_token": before})
    assert r.status == 302
    after = c.csrf("/")
    assert after != before
    # a forged logout carrying the token from before login does nothing
    assert c.post("/logout", {"csrf_token": before}).status == 400
    assert c.get("/").status == 200
    assert c.post("/logout", {"csrf_token": after}).status == 302
    assert c.get("/").status == 302


def test_session_cookie_is_a_random_id_whose_hash_is_stored(site):
    base, data = site
    c = Client(base)
    token = c.csrf("/login")
    r = c.post("/login", {"username": VIEWER, "password": VIEWER_PW, "csrf_token": token})
    cookie = r.cookie(SESSION)
    assert cookie is not None and len(cookie.value) >= 40 and VIEWER not in cookie.value
    assert "." not in cookie.value  # not a signed payload, just an id
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]  # plain http
    assert r.cookie("coretriage_login") is not None  # the pre-login nonce goes at login
    db = sqlite3.connect(data / "coretriage.db")
    try:
        stored = {row[0] for row in db.execute("SELECT id_hash FROM web_sessions")}
    finally:
        db.close()
    assert hashlib.sha256(cookie.value.encode()).hexdigest() in stored and cookie.value not in stored


def test_revoked_token_is_refused_at_once(site):
    base, data = site
    token = cli(data, "token", "add", VIEWER).strip()
    api = Client(base)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/groups", headers=bearer).status == 200
    assert token not in cli(data, "token", "list")  # listing never shows a token
    listed = json.loads(cli(data, "token", "list", "--user", VIEWER, "--json"))
    assert len(listed) == 1 and listed[0]["last_used"] is not None and token not in json.dumps(listed)
    ids = [listed[0]["id"]]
    cli(data, "token", "revoke", ids[0])
    assert api.get("/api/v1/groups", headers=bearer).status == 401


def test_expired_token_is_refused(site):
    base, data = site
    from coretriage.config import load_config
    from coretriage.store import Store
    from coretriage.users import new_token, token_hash

    token = new_token()
    store = Store(load_config(data).database_url)
    try:
        # long enough that a loaded machine still asks before it runs out
        expires = time.time() + 5
        store.add_token(VIEWER, token_hash(token), expires=expires)
    finally:
        store.close()
    bearer = {"Authorization": f"Bearer {token}"}
    assert Client(base).get("/api/v1/groups", headers=bearer).status == 200
    time.sleep(max(0.0, expires + 0.5 - time.time()))
    assert Client(base).get("/api/v1/groups", headers=bearer).status == 401
    # a token made by the CLI always carries an expiry: --days, else the token_days setting (90)
    cli(data, "token", "add", VIEWER, "--days", "3")
    cli(data, "token", "add", VIEWER)
    made = json.loads(cli(data, "token", "list", "--user", VIEWER, "--json"))[-2:]
    assert [round((t["expires"] - t["created"]) / 86400) for t in made] == [3, 90]


def test_idle_and_old_sessions_end(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, VIEWER, "viewer", VIEWER_PW)
    # busy's requests come a few tenths of a second apart, and last_seen is written at most
    # every idle/4: idle leaves a loaded machine seconds of slack before it ends busy's session
    idle_limit, lifetime = 6, 12
    write_settings(data, session_idle=idle_limit, session_lifetime=lifetime)
    with web_server(data, tmp_path / "server.log") as base:
        idle = logged_in(base, VIEWER, VIEWER_PW)
        busy = logged_in(base, VIEWER, VIEWER_PW)
        cookies = dict(busy.cookies)
        started = time.monotonic()
        while time.monotonic() - started < idle_limit + 1.5:  # busy keeps its session alive past the idle limit
            assert busy.get("/").status == 200
            time.sleep(0.5)
        assert refused(idle)
        while time.monotonic() - started < lifetime + 0.5:
            busy.get("/")
            time.sleep(0.5)
        assert refused(replay(base, cookies))  # the absolute limit, however busy


@pytest.mark.parametrize("settings, forwarded, secure", [
    ({}, False, False),
    ({}, True, False),  # an untrusted client cannot claim https
    ({"trusted_proxies": 1}, True, True),  # the proxy's word, when it is trusted
    ({"secure_cookies": True}, False, True),
])
def test_secure_flag(tmp_path, settings, forwarded, secure):
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, VIEWER, "viewer", VIEWER_PW)
    write_settings(data, **settings)
    with web_server(data, tmp_path / "server.log") as base:
        c = Client(base)
        extra = {"X-Forwarded-Proto": "https"} if forwarded else {}
        page = c.get("/login", headers=extra)
        token = CSRF.search(page.text).group(1)
        r = c.post("/login", {"username": VIEWER, "password": VIEWER_PW, "csrf_token": token}, headers=extra)
        assert r.status == 302
        for cookie in (page.cookie("coretriage_login"), r.cookie(SESSION)):
            assert bool(cookie["secure"]) == secure and cookie["httponly"] and cookie["samesite"] == "Lax"

