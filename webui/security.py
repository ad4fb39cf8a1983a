"""Who is asking, and may they: sessions for people, bearer tokens for the
API, CSRF tokens on every form, admin-only actions."""

from __future__ import annotations

import functools
import hmac
import secrets

from flask import abort, current_app, g, redirect, request, session, url_for

from coretriage.users import token_hash


def store():
    return current_app.extensions["store"]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _load_user() -> None:
    g.user = None
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        g.user = store().user_for_token(token_hash(auth[7:].strip()))
        g.via_token = g.user is not None
        return
    g.via_token = False
    name = session.get("user")
    if name:
        found = store().user_record(name)
        g.user = found[0] if found else None


def _check_csrf():
    # API calls with a token carry no cookie to forge; forms must prove origin
    if request.method in ("GET", "HEAD", "OPTIONS") or g.get("via_token"):
        return None
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="The form was missing its CSRF token; reload the page and try again.")
    return None


def install(app) -> None:
    app.before_request(_load_user)
    app.before_request(_check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token


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
