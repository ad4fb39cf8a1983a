from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from analyzer.model import Analysis
from coretriage.access import RESTRICTED_REASON, is_restricted
from coretriage.store import STATES, GroupQuery, NotFound
from webui.rows import crash_rows, group_rows
from webui.security import admin_required, is_admin, login_required, store, visible

bp = Blueprint("groups", __name__)
PAGE = 50
FILTERS = ("executable", "image", "container", "host", "signal", "state")
LIST_FACETS, LIST_TAGS = ("host", "image", "container"), 3  # the list's tags: a group's top 3 hosts and images
# A list counts its groups only this far past the page ("1,000+ match", as
# Sentry's "100+"): counting a fleet's 50,000 groups, or every group a common
# word is in, was most of the database's work for a page.
COUNT_LIMIT = 1000


def _time(value: str | None, end: bool = False) -> float | None:
    """A date (YYYY-MM-DD) or a relative age (24h, 7d) from a filter box."""
    if not value:
        return None
    value = value.strip()
    try:
        if value[-1] in "hd" and value[:-1].isdigit():
            return time.time() - int(value[:-1]) * (3600 if value[-1] == "h" else 86400)
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
        return day + 86399 if end else day
    except ValueError:
        abort(400, description=f"bad time {value!r}: use YYYY-MM-DD or an age like 24h or 7d")


def url_stem(endpoint: str, **placeholder) -> str:
    """A view's URL up to its last argument, built once per page, not once
    per row: ``placeholder`` is one value whose URL is itself, removed. The
    rows' ids (g + number, c + hex) need no quoting in a path."""
    url = url_for(endpoint, **placeholder)
    value = str(next(iter(placeholder.values())))
    if not url.endswith("/" + value):
        raise RuntimeError(f"{endpoint}'s URL {url} does not end in its argument")
    return url[: -len(value)]


def query_from(args) -> GroupQuery:
    try:
        page = max(1, int(args.get("page", 1)))
        limit = min(200, max(1, int(args.get("limit", PAGE))))
    except ValueError:
        abort(400, description="page and limit must be numbers")
    sort = args.get("sort", "last_seen")
    if sort not in ("last_seen", "count", "first_seen"):
        abort(400, description="sort must be last_seen, count or first_seen")
    return GroupQuery(sort=sort, search=args.get("q") or None, count_limit=COUNT_LIMIT,
                      since=_time(args.get("since")), until=_time(args.get("until"), end=True),
                      limit=limit, offset=(page - 1) * limit,
                      **{k: args.get(k) or None for k in FILTERS})


def group_page(args, facet_kinds: tuple[str, ...] | None = None, facet_top: int | None = None):
    """One page of groups for the request's filters, with each group's
    hosts/images/containers (``Store.facets``' ``kinds`` and ``top``) and
    crashes per day: the list page and the API."""
    q = query_from(args)
    rows, total = store().find_groups(q)
    ids = [r.id for r in rows]
    return q, rows, total, store().facets(ids, facet_kinds, facet_top), store().daily_counts(ids)


@bp.route("/")
@login_required
def index():
    q, rows, total, facets, daily = group_page(request.args, LIST_FACETS, LIST_TAGS)  # what the rows show
    page = q.offset // q.limit + 1
    return render_template("groups/list.html", groups=rows, total=total, capped=q.count_capped(total),
                           q=q, page=page,
                           rows=group_rows(rows, facets, daily, url_stem("groups.detail", group_id=0)),
                           pages=max(1, -(-total // q.limit)), states=STATES, args=request.args,
                           choices=store().distinct_values(("executable", "signal")))


@bp.route("/groups/<int:group_id>")
@login_required
def detail(group_id: int):
    try:
        group = store().group(group_id)
    except NotFound:
        abort(404)
    crashes = store().crash_summaries(group_id, limit=200, architecture=True)
    architectures = Counter(c["architecture"] for c in crashes if c["architecture"]).most_common()
    latest = store().crash(crashes[0]["id"]) if crashes else None
    hidden = RESTRICTED_REASON if latest is not None and is_restricted(latest.meta) else None
    latest = visible(latest) if latest is not None else None
    analysis = Analysis.from_dict(latest.analysis).mixed() if latest else None
    return render_template("groups/detail.html", group=group, latest=latest,
                           rows=crash_rows(crashes, url_stem("crashes.detail", crash_id="c")),
                           analysis=analysis, hidden=hidden, architectures=architectures, latest_hidden=bool(hidden) and not is_admin(),
                           facets=store().facets([group_id])[group_id], states=STATES, may_triage=is_admin(),
                           daily=store().daily_counts([group_id], days=90)[group_id])


def change_state(group_id: int, state: str, note: str | None) -> None:
    """Set a group's state and note: the form and the API. Admins only."""
    if state not in STATES:
        abort(400, description=f"state must be one of {', '.join(STATES)}")
    try:
        store().group(group_id)
    except NotFound:
        abort(404, description=f"no group g{group_id}")
    store().set_state(group_id, state, None if note is None else note[:2000])


@bp.route("/groups/<int:group_id>/state", methods=("POST",))
@admin_required
def set_state(group_id: int):
    state = request.form.get("state", "")
    change_state(group_id, state, request.form.get("note", ""))
    flash(f"g{group_id} is now {state}.")
    return redirect(url_for("groups.detail", group_id=group_id))
