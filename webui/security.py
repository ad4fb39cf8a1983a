"""Who is asking, and may they: sessions for people (``webui.sessions``),
bearer tokens for the API, CSRF tokens on every form, admin-only actions,
and the security headers on every response. A host's token (``cth_...``)
is refused here everywhere (403): hosts upload through ``webui.ingest``,
which takes no user token or session; an unknown bearer token is 401."""

from __future__ import annotations

import functools
import hmac

from flask import abort, current_app, g, redirect, request, session, url_for

from coretriage.access import shown
from coretriage.hosts import is_host_token
from coretriage.records import User
from coretriage.users import token_hash
from webui import sessions

# No inline script or style anywhere: the templates use only /static/style.css
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def store():
    return current_app.extensions["store"]


def _load_user() -> None:
    g.user = None
    g.via_token = False
    if request.blueprint in ("ingest", "workerapi"):
        return  # hosts and workers: their own tokens only (webui.ingest, webui.workerapi), never a user's
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth[7:].strip()
        if is_host_token(token):
            abort(403, description="a host token can only upload (/ingest/v1); it reads nothing")
        g.user = store().user_for_token(token_hash(token))
        g.via_token = g.user is not None
        if g.user is None and request.endpoint != "metrics.metrics":
            abort(401, description="unknown or expired bearer token")
        return
    row = getattr(session, "row", None)
    if row is not None and row.role is not None:  # the role came with the session's row (Store.web_session)
        g.user = User(row.user, row.role)


def _check_csrf():
    # API calls with a token carry no cookie to forge; forms must prove origin
    if request.method in ("GET", "HEAD", "OPTIONS") or g.get("via_token") or request.blueprint in ("ingest", "workerapi"):
        return None
    if request.endpoint == "auth.logout" and session.sid is None:
        return None  # nothing to end: logging out of an expired session just goes to the login page
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = sessions.expected_csrf()
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="The form was missing its CSRF token; reload the page and try again.")
    return None


def _headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":  # crash data and cores are for no cache (send_file would say no-cache)
        response.headers["Cache-Control"] = "no-store"
    return response


def install(app) -> None:
    app.session_interface = sessions.DatabaseSessions()
    app.before_request(_load_user)
    app.before_request(_check_csrf)
    app.after_request(_headers)
    app.jinja_env.globals["csrf_token"] = sessions.csrf_token


def is_admin() -> bool:
    return bool(g.get("user") and g.user.is_admin)


def visible(row):
    """A crash as the current user may see it (``coretriage.access``)."""
    return shown(is_admin(), row)


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            if request.path.startswith("/api/"):
                abort(401, description="a bearer token is required")
            return redirect(url_for("auth.login", next=request.full_path))
        return view(*args, **kwargs)
    return wrapped


def admin_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not g.user.is_admin:
            abort(403, description="only admins may do this")
        return view(*args, **kwargs)
    return wrapped
