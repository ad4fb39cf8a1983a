from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, render_template, request, send_file

from analyzer.model import Analysis
from coretriage.access import RESTRICTED_REASON, is_restricted
from coretriage.masking import masked_row, secret_names
from coretriage.reports import FORMATS, core_kind, crash_report, group_report, os_release_text
from coretriage.store import NotFound
from webui.security import admin_required, is_admin, login_required, store, visible

bp = Blueprint("crashes", __name__)
MIME = {"text": "text/plain", "markdown": "text/markdown", "json": "application/json"}


def host_secret_names() -> tuple[str, ...]:
    """What the collector masks on this host: every crash shown is masked again with it."""
    return secret_names(current_app.extensions["coretriage"].data_dir)


def _crash(crash_id: str):
    try:
        return store().crash(crash_id)
    except NotFound:
        abort(404)


@bp.route("/crashes/<crash_id>")
@login_required
def detail(crash_id: str):
    row = _crash(crash_id)
    restricted = is_restricted(row.meta)
    row = masked_row(visible(row), host_secret_names())
    analysis = Analysis.from_dict(row.analysis).mixed()  # Python frames in place of the eval loop's
    meta = row.meta or {}
    skew = None
    if meta.get("host_time") is not None and meta.get("crash_time") is not None:
        skew = float(meta["host_time"]) - float(meta["crash_time"])
    return render_template("crashes/detail.html", crash=row, a=analysis, meta=meta, skew=skew, core=core_kind(row),
                           key=set(row.signature.get("key_frames") or ()), group=store().group(row.group_id),
                           restricted=RESTRICTED_REASON if restricted else None, hidden=restricted and not is_admin(),
                           os_release=os_release_text(row))


def export_response(text: str, fmt: str, name: str) -> Response:
    ext = {"text": "txt", "markdown": "md", "json": "json"}[fmt]
    resp = Response(text, mimetype=MIME[fmt])
    if request.args.get("download"):
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}.{ext}"'
    return resp


def export_ref(ref: str, default_format: str) -> Response:
    """A crash or group report, as the CLI's export: for the UI and the API."""
    fmt = request.args.get("format", default_format)
    if fmt not in FORMATS:
        abort(400, description="format must be text, markdown or json")
    if ref.startswith("g") and ref[1:].isdigit():
        try:
            group = store().group(int(ref[1:]))
        except NotFound:
            abort(404, description=f"no group {ref}")
        rows = [visible(r) for r in store().crashes_of(group.id)]
        return export_response(group_report(group, rows, fmt, host_secret_names()), fmt, ref)
    try:
        return export_response(crash_report(visible(store().crash(ref)), fmt, host_secret_names()), fmt, ref)
    except NotFound:
        abort(404, description=f"no crash {ref}")


@bp.route("/export/<ref>")
@login_required
def export(ref: str):
    return export_ref(ref, "text")


@bp.route("/crashes/<crash_id>/core")
@admin_required
def download_core(crash_id: str):
    row = _crash(crash_id)
    config = current_app.extensions["coretriage"]
    path = (config.data_dir / row.core_file) if row.core_file else None
    if path is None or not path.is_file():
        abort(404, description="no core is stored for this crash (metadata only)")
    return send_file(path, as_attachment=True, download_name=f"{row.id}.core.zst",
                     mimetype="application/zstd")
