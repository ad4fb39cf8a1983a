"""``/hosts``: every host registered to upload here (``coretriage host
add``), with its last heartbeat, for admins. A stale host (no heartbeat for
three of its intervals) or one whose core_pattern is no longer ours stands
out (``coretriage.hosts.HostRow.markers``)."""

from __future__ import annotations

import time

from flask import Blueprint, render_template

from coretriage.hosts import age, size
from webui.security import admin_required, store

bp = Blueprint("hosts", __name__)


@bp.route("/hosts")
@admin_required
def index():
    now = time.time()
    rows = [(h, h.to_json(now)) for h in store().hosts()]
    return render_template("hosts.html", hosts=rows, now=now, age=age, size=size)
