"""JSON API under /api/v1/, for tokens (``Authorization: Bearer ct_...``)
or a logged-in browser. Described by /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from coretriage.reports import FORMATS, crash_json
from coretriage.store import STATES, NotFound
from webui.crashes import export_ref, host_secret_names
from webui.groups import change_state, group_page
from webui.security import admin_required, login_required, store, visible

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def group_summary(g, facets=None, daily=None) -> dict:
    out = {"group_id": g.ref, "signature": g.signature, "key_frame": g.key_frame, "executable": g.executable,
           "signal": g.signal, "count": g.count, "first_seen": g.first_seen, "last_seen": g.last_seen,
           "state": g.state, "note": g.note, "quality": g.quality,
           "renamed_from": g.renamed_from, "renamed_at": g.renamed_at}  # when symbols arrived
    if facets is not None:
        out.update({k: [{"value": v, "count": n} for v, n in facets.get(k, [])]
                    for k in ("host", "image", "container")})
    if daily is not None:
        out["daily_counts"] = daily
    return out


@bp.route("/groups")
@login_required
def groups():
    q, rows, total, facets, daily = group_page(request.args)
    return jsonify(total=total, total_exact=not q.count_capped(total), offset=q.offset, limit=q.limit,
                   groups=[group_summary(r, facets[r.id], daily[r.id]) for r in rows])


def _group(ref: str):
    if not (ref.startswith("g") and ref[1:].isdigit()):
        abort(404, description=f"{ref!r} is not a group id")
    try:
        return store().group(int(ref[1:]))
    except NotFound:
        abort(404, description=f"no group {ref}")


@bp.route("/groups/<ref>")
@login_required
def group(ref: str):
    g = _group(ref)
    crashes = store().crashes_of(g.id, limit=500)
    out = group_summary(g, store().facets([g.id])[g.id], store().daily_counts([g.id], days=90)[g.id])
    out["crashes"] = [{"crash_id": c.id, "crashed_at": c.crashed_at, "host": c.host, "container": c.container,
                       "image": c.image} for c in crashes]
    return jsonify(out)


@bp.route("/groups/<ref>/state", methods=("POST",))
@admin_required
def set_state(ref: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("state"), str) \
            or not isinstance(body.get("note", ""), str):
        abort(400, description='send JSON: {"state": "acknowledged", "note": "optional text"}')
    group = _group(ref)
    change_state(group.id, body["state"], body.get("note"))
    return jsonify(group_summary(store().group(group.id)))


@bp.route("/crashes/<crash_id>")
@login_required
def crash(crash_id: str):
    try:
        return jsonify(crash_json(visible(store().crash(crash_id)), host_secret_names()))
    except NotFound:
        abort(404, description=f"no crash {crash_id}")


@bp.route("/export/<ref>")
@login_required
def export(ref: str):
    return export_ref(ref, "json")


@bp.route("/openapi.json")
@login_required
def openapi():
    return jsonify(OPENAPI)


_FILTERS = [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
    ("q", "words that must all appear in the signature or frame names"),
    ("executable", "exact executable path"), ("image", "container image"), ("container", "container name or id"),
    ("host", "host name"), ("signal", "e.g. SIGSEGV"), ("state", "new, acknowledged, resolved, regressed, ignored"),
    ("since", "last seen at or after: YYYY-MM-DD or an age like 24h, 7d"),
    ("until", "first seen at or before: YYYY-MM-DD"),
    ("sort", "last_seen (default), count or first_seen"), ("page", "1-based page"), ("limit", "1 to 200"))]
_REF = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}}
_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "coretriage", "version": "1", "description": "Crash groups and crashes from core dumps."},
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
    },
    "security": [{"token": []}],
    "paths": {
        "/api/v1/groups": {"get": {"summary": "Crash groups, filtered, sorted and paged", "parameters": _FILTERS,
                                   "responses": {"200": {"description": "a page of groups; total counts at most 1,000 past the page "
                                                                        "(total_exact false: at least total)"},
                                                 "400": _ERR, "401": _ERR}}},
        "/api/v1/groups/{ref}": {"get": {"summary": "One group (ref is g<number>)", "parameters": [_REF],
                                         "responses": {"200": {"description": "the group"}, "404": _ERR, "401": _ERR}}},
        "/api/v1/groups/{ref}/state": {"post": {
            "summary": "Set a group's state and note (admins only)", "parameters": [_REF],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["state"],
                "properties": {"state": {"type": "string", "enum": list(STATES)},
                               "note": {"type": "string", "description": "kept as is when left out"}}}}}},
            "responses": {"200": {"description": "the group"}, "400": _ERR, "401": _ERR, "403": _ERR,
                          "404": _ERR}}},
        "/api/v1/crashes/{ref}": {"get": {"summary": "One crash with its full analysis", "parameters": [_REF],
                                          "responses": {"200": {"description": "the crash; for a Python "
                                                                "process also analysis.python (every thread's "
                                                                "Python stack) and mixed_stack (the crashing "
                                                                "thread, Python frames in place of the eval "
                                                                "loop's)"},
                                                        "404": _ERR, "401": _ERR}}},
        "/api/v1/export/{ref}": {"get": {"summary": "A report for a crash or group, as the CLI's export",
                                         "parameters": [_REF, {"name": "format", "in": "query", "schema": {
                                             "type": "string", "enum": list(FORMATS)}}],
                                         "responses": {"200": {"description": "the report"}, "400": _ERR,
                                                       "404": _ERR, "401": _ERR}}},
    },
}
