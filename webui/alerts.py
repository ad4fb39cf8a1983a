"""``/alerts``: the notification channels and the latest alert events, for
admins only (a viewer gets 403 on every route here). Admins add, edit,
remove and test channels with the same checks as ``coretriage notify``
(``coretriage.alerts.make_channel``); every form carries the CSRF token
(``webui.security``). A webhook shows only its scheme and host: the rest of
a URL is often a credential (Slack's are), and a channel's secret is never
shown. Editing a channel leaves its URL and secret as they are unless new
ones are typed."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from webui.security import admin_required, store

bp = Blueprint("alerts", __name__)


def shown_target(channel) -> str:
    if channel.kind != "webhook":
        return channel.target
    u = urlsplit(channel.target)
    return f"{u.scheme}://{u.hostname}{f':{u.port}' if u.port else ''}/…"


def _channel(name: str):
    found = [c for c in store().channels() if c.name == name]
    if not found:
        abort(404, description=f"no channel {name}")
    return found[0]


@bp.route("/alerts")
@admin_required
def index():
    s = store()
    channels = [(c, shown_target(c)) for c in s.channels()]
    editing = next((c for c, _ in channels if c.name == request.args.get("edit")), None)
    events = s.recent_alert_events(100)
    return render_template("alerts.html", channels=channels, events=events, editing=editing,
                           digests=s.recent_digests(20))


@bp.route("/alerts/channels", methods=("POST",))
@admin_required
def save():
    from coretriage.alerts import KINDS, make_channel

    f = request.form
    old = None
    if f.get("editing"):
        old = _channel(f["editing"])
    kind = f.get("kind", "webhook")
    target = f.get("target", "").strip()
    secret = f.get("secret", "")
    if old is not None:  # an edit keeps what it does not retype
        if old.name != f.get("name", "").strip():
            abort(400, description="a channel keeps its name; add another one instead")
        target = target or (old.target if kind == old.kind else "")
        secret = "" if f.get("clear_secret") else secret or (old.secret or "")
    events = ",".join(k for k in KINDS if f.get(f"event_{k}")) or "none"
    try:
        channel = make_channel(f.get("name", ""), webhook=target if kind == "webhook" else None,
                               email=target if kind == "email" else None, secret=secret or None, events=events,
                               executable=f.get("executable"), host=f.get("host"), image=f.get("image"),
                               quiet=f.get("quiet", "0"), digest=f.get("digest", "0"))
    except ValueError as exc:
        flash(f"Not saved: {exc}.")
        return redirect(url_for("alerts.index", edit=old.name if old else None))
    if old is None and any(c.name == channel.name for c in store().channels()):
        flash(f"Not saved: there is a channel {channel.name} already; edit it instead.")
        return redirect(url_for("alerts.index"))
    store().add_channel(channel)
    flash(f"Channel {channel.name} {'saved' if old else 'added'}.")
    return redirect(url_for("alerts.index"))


@bp.route("/alerts/channels/<name>/remove", methods=("POST",))
@admin_required
def remove(name: str):
    if not store().remove_channel(name):
        abort(404, description=f"no channel {name}")
    flash(f"Channel {name} removed.")
    return redirect(url_for("alerts.index"))


@bp.route("/alerts/channels/<name>/test", methods=("POST",))
@admin_required
def test(name: str):
    from coretriage.notify import DeliveryError, send_test

    channel = _channel(name)
    try:
        send_test(current_app.extensions["coretriage"], channel)
    except DeliveryError as exc:
        flash(f"Test alert to {name} failed: {exc}")
    else:
        flash(f"Test alert sent to {name}.")
    return redirect(url_for("alerts.index"))
