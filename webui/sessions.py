"""Server-side sessions: Flask's ``session`` kept in the database.

A logged-in browser's cookie (``coretriage_session``) holds only a random id;
the database keeps its SHA-256 with the user, the session's own CSRF token,
when it began and when it was last used (``web_sessions``). So the server can
end a session: logout ends one, a password or role change (``Store.add_user``)
ends all of a user's, and a session idle for ``session_idle`` seconds or older
than ``session_lifetime`` is refused and forgotten.

Before login there is no session row (a visitor must not be able to fill the
database): the login form's CSRF token is an HMAC of a random nonce kept in a
second cookie (``coretriage_login``), which login deletes. The logged-in
session gets a CSRF token of its own, so a token from before login is worth
nothing after it.

Both cookies are HttpOnly and SameSite=Lax, and Secure when the request came
over HTTPS (as seen through ``trusted_proxies`` proxies) or ``secure_cookies``
says so.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import current_app, request, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from coretriage.records import SessionRow
from coretriage.users import new_session_id, token_hash

COOKIE = "coretriage_session"
LOGIN_COOKIE = "coretriage_login"
TOUCH_EVERY = 60.0  # seconds: last_seen is written at most this often (or a quarter of session_idle)


def alive(row: SessionRow, now: float, idle: float, lifetime: float) -> bool:
    """Whether a session may still be used at ``now``."""
    return now - row.last_seen < idle and now - row.created < lifetime


class ServerSession(CallbackDict, SessionMixin):
    """The request's session: its data (flashed messages) and, once logged
    in, its id and row."""

    def __init__(self, data=None, sid: str | None = None, row: SessionRow | None = None):
        def changed(_):
            self.modified = True

        super().__init__(data or {}, changed)
        self.sid = sid  # the cookie's id; None before login
        self.row = row
        self.modified = False
        self.started = False  # logged in during this request: set the cookie
        self.ended = False  # logged out (or refused) during this request: drop the cookie
        self.login_nonce: str | None = None  # a new pre-login nonce to set

    @property
    def user(self) -> str | None:
        return self.row.user if self.row else None

    @property
    def csrf(self) -> str | None:
        return self.row.csrf if self.row else None


def _store():
    return current_app.extensions["store"]


def _config():
    return current_app.extensions["coretriage"]


class DatabaseSessions(SessionInterface):
    def open_session(self, app, request) -> ServerSession:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return ServerSession()
        if len(sid) <= 128:
            row = _store().web_session(token_hash(sid))
            config = _config()
            if row is not None and alive(row, time.time(), config.session_idle, config.session_lifetime):
                return ServerSession(row.data, sid, row)
            if row is not None:
                _store().end_session(token_hash(sid))
        refused = ServerSession()
        refused.ended = True  # an unknown, ended or expired id: the browser forgets it
        return refused

    def save_session(self, app, s: ServerSession, response) -> None:
        response.vary.add("Cookie")
        if not isinstance(s, ServerSession):  # open_session failed (the database is down): nothing to save
            return
        secure = _config().secure_cookies or request.is_secure
        cookie = {"httponly": True, "samesite": "Lax", "secure": secure, "path": "/"}
        if s.login_nonce and not s.sid:
            response.set_cookie(LOGIN_COOKIE, s.login_nonce, **cookie)
        if s.ended and not s.sid:
            response.delete_cookie(COOKIE, **cookie)
        if s.sid is None:
            return
        now = time.time()
        if s.started:
            response.set_cookie(COOKIE, s.sid, max_age=int(_config().session_lifetime), **cookie)
            if request.cookies.get(LOGIN_COOKIE):
                response.delete_cookie(LOGIN_COOKIE, **cookie)
        if s.modified:
            _store().touch_session(token_hash(s.sid), now, dict(s))
        elif now - s.row.last_seen > min(TOUCH_EVERY, _config().session_idle / 4):
            _store().touch_session(token_hash(s.sid), now)


def start(user: str) -> None:
    """Log ``user`` in: a new session with a new id and CSRF token; the
    request's old session, if any, ends (no fixation)."""
    s: ServerSession = session
    end()
    now = time.time()
    config = _config()
    store = _store()
    store.end_stale_sessions(now - config.session_idle, now - config.session_lifetime)
    sid, csrf = new_session_id(), secrets.token_urlsafe(32)
    store.add_session(token_hash(sid), user, csrf, now)
    s.clear()
    s.sid, s.row = sid, SessionRow(user, csrf, now, now)
    s.started, s.ended, s.modified = True, False, False


def end() -> None:
    """Log out: the session's row goes, and with it the cookie's worth."""
    s: ServerSession = session
    if s.sid is not None:
        _store().end_session(token_hash(s.sid))
        s.clear()
        s.sid, s.row, s.ended, s.started, s.modified = None, None, True, False, False


def _login_token(nonce: str) -> str:
    key = current_app.secret_key.encode()
    return hmac.new(key, b"login-csrf\0" + nonce.encode(), hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The token forms carry: the session's own, or before login one bound
    to this browser's pre-login nonce."""
    s: ServerSession = session
    if s.csrf:
        return s.csrf
    nonce = s.login_nonce or request.cookies.get(LOGIN_COOKIE)
    if not nonce or len(nonce) > 128:
        nonce = s.login_nonce = secrets.token_urlsafe(32)
    return _login_token(nonce)


def expected_csrf() -> str | None:
    """The token a state-changing request of this browser must carry."""
    s: ServerSession = session
    if s.csrf:
        return s.csrf
    nonce = request.cookies.get(LOGIN_COOKIE)
    return _login_token(nonce) if nonce and len(nonce) <= 128 else None
