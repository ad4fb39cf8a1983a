"""Logging in and out. A login is throttled (``webui.throttle``), checks the
password in the same time whether the user exists or not, and starts a new
server-side session (``webui.sessions``); logging out ends it."""

from __future__ import annotations

import time
from urllib.parse import urlparse

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from coretriage.users import check_login, throttle_keys
from webui import sessions
from webui.security import store
from webui.throttle import wait_seconds

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # only local paths: never an open redirect to another site
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("groups.index")


@bp.route("/login", methods=("GET", "POST"))
def login():
    if request.method == "POST":
        config = current_app.extensions["coretriage"]
        name = request.form.get("username", "")
        user_key, addr_key = throttle_keys(name, request.remote_addr)
        now = time.time()
        wait = wait_seconds(store().login_failures([user_key, addr_key]),
                            {user_key: config.login_failures_per_user, addr_key: config.login_failures_per_address},
                            now, config.login_window)
        if wait:
            minutes = max(1, -(-wait // 60))
            flash(f"Too many failed logins: try again in {minutes} minute{'s' if minutes > 1 else ''}.")
            return render_template("auth/login.html"), 429, {"Retry-After": str(wait)}
        found = store().user_record(name)
        if check_login(found[1] if found else None, request.form.get("password", "")):
            store().clear_login_failures(user_key)
            sessions.start(found[0].name)
            return redirect(_safe_next(request.args.get("next")))
        store().add_login_failure([user_key, addr_key], now, config.login_window)
        flash("Wrong user name or password.")
    return render_template("auth/login.html")


@bp.route("/logout", methods=("POST",))
def logout():
    sessions.end()
    return redirect(url_for("auth.login"))
