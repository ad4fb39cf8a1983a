"""``/alerts``: the notification channels and the latest alert events, for
admins (channels are managed from the CLI: ``coretriage notify``). A
webhook shows only its scheme and host: the rest of a URL is often a
credential (Slack's are), and a channel's secret is never shown."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, render_template

from webui.security import admin_required, store

bp = Blueprint("alerts", __name__)


def shown_target(channel) -> str:
    if channel.kind != "webhook":
        return channel.target
    u = urlsplit(channel.target)
    return f"{u.scheme}://{u.hostname}{f':{u.port}' if u.port else ''}/…"


@bp.route("/alerts")
@admin_required
def index():
    s = store()
    channels = [(c, shown_target(c)) for c in s.channels()]
    events = s.recent_alert_events(100)
    return render_template("alerts.html", channels=channels, events=events)
