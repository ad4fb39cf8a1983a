from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from coretriage.users import check_password
from webui.security import store

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # only local paths: never an open redirect to another site
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("groups.index")


@bp.route("/login", methods=("GET", "POST"))
def login():
    if request.method == "POST":
        name = request.form.get("username", "")
        found = store().user_record(name)
        if found and check_password(found[1], request.form.get("password", "")):
            csrf = session.get("csrf")
            session.clear()  # a fresh session on login
            session["user"] = found[0].name
            if csrf:
                session["csrf"] = csrf
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong user name or password.")
    return render_template("auth/login.html")


@bp.route("/logout", methods=("POST",))
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
