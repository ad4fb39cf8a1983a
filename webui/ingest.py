"""The ingest API under ``/ingest/v1``: hosts upload bundles and send
heartbeats (the protocol is ``coretriage.receive``'s docstring). Only a host
token (``Authorization: Bearer cth_...``) is accepted here, and only here:
a user's token or login session is refused, and ``webui.security`` refuses a
host token everywhere else. Every error is JSON, ``{"error": "one line"}``,
with a Retry-After on 429, 503 and 507.
"""

from __future__ import annotations

import threading

from flask import Blueprint, current_app, g, jsonify, request

from coretriage.hosts import HostError, is_host_token, parse_report
from coretriage.receive import MAX_COMMIT, MAX_REQUEST, IngestRefused, Receiver
from coretriage.users import token_hash

bp = Blueprint("ingest", __name__, url_prefix="/ingest/v1")
PER_HOST = 8  # transfers of one host at once, per server process, before 429
_busy: dict[str, int] = {}
_busy_lock = threading.Lock()


def _receiver() -> Receiver:
    return current_app.extensions["ingest.receiver"]


def handover():
    return current_app.extensions["ingest.handover"]


@bp.before_request
def _authenticate():
    request.max_content_length = MAX_COMMIT if request.method == "POST" else MAX_REQUEST
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if not token or not is_host_token(token):
        return _error(401, "a host token is required (Authorization: Bearer cth_...; coretriage host add NAME)")
    try:
        host = current_app.extensions["store"].host_for_token(token_hash(token))
    except Exception:  # the database is down: the host tries again later
        return _error(503, "the server cannot reach its database", retry_after=30)
    if host is None:
        return _error(401, "unknown or revoked host token")
    g.host = host
    return None


def _error(status: int, message: str, retry_after: float | None = None, **extra):
    response = jsonify(error=message, **extra)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(max(1, retry_after)))
    return response


@bp.errorhandler(IngestRefused)
def _refused(exc: IngestRefused):
    return _error(exc.status, str(exc), exc.retry_after, **exc.extra)


@bp.errorhandler(HostError)
def _bad_report(exc: HostError):
    return _error(400, str(exc))


class _Slot:
    """At most PER_HOST transfers of one host at once (429 beyond)."""

    def __enter__(self):
        with _busy_lock:
            if _busy.get(g.host, 0) >= PER_HOST:
                raise IngestRefused(429, f"at most {PER_HOST} uploads of one host at once", retry_after=5)
            _busy[g.host] = _busy.get(g.host, 0) + 1

    def __exit__(self, *exc):
        with _busy_lock:
            _busy[g.host] -= 1


def _json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise IngestRefused(400, "the body must be JSON")
    return body


def _upload_headers() -> tuple[int, int, int]:
    try:
        offset = int(request.headers["Upload-Offset"])
        total = int(request.headers["Upload-Length"])
        length = int(request.headers.get("Content-Length", "0"))
    except (KeyError, ValueError):
        raise IngestRefused(400, "send Upload-Offset, Upload-Length and Content-Length headers") from None
    return offset, total, length


@bp.route("/heartbeat", methods=("POST",))
def heartbeat():
    report = parse_report(_json_body())
    current_app.extensions["store"].host_heartbeat(g.host, report)
    return jsonify(host=g.host, ok=True)


@bp.route("/files/missing", methods=("POST",))
def missing():
    body = _json_body()
    return jsonify(missing=_receiver().missing(body.get("sha256") if isinstance(body, dict) else None))


@bp.route("/files/<digest>", methods=("GET",))
def file_status(digest: str):
    return jsonify(_receiver().file_status(g.host, digest))


@bp.route("/files/<digest>", methods=("PATCH",))
def file_upload(digest: str):
    offset, total, length = _upload_headers()
    with _Slot():
        return jsonify(_receiver().write_file(g.host, digest, offset, total, request.stream, length))


@bp.route("/bundles/<bid>/parts/<part>", methods=("GET",))
def part_status(bid: str, part: str):
    return jsonify(_receiver().part_status(g.host, bid, part))


@bp.route("/bundles/<bid>/parts/<part>", methods=("PATCH",))
def part_upload(bid: str, part: str):
    offset, total, length = _upload_headers()
    with _Slot():
        return jsonify(_receiver().write_part(g.host, bid, part, offset, total, request.stream, length))


@bp.route("/bundles/<bid>/commit", methods=("POST",))
def commit(bid: str):
    config = current_app.extensions["coretriage"]
    if handover().backlog() >= config.ingest_backlog:
        raise IngestRefused(503, f"{handover().backlog()} bundles wait for the analysis; try again later",
                            retry_after=30)
    body = _json_body()
    with _Slot():
        bundle, meta, new = _receiver().commit(g.host, bid, body)
    if new:
        try:
            current_app.extensions["store"].host_crashed(g.host, float(meta.crash_time))
        except Exception:
            pass  # the host list's last crash only; the bundle is stored
    handover().offer(bundle)  # also a repeated commit of a bundle whose hand-over failed
    return jsonify(status="stored", bundle=bid, host=g.host, new=new)


def register(app, wiring) -> None:
    from coretriage.handover import Handover

    config = wiring.config
    app.extensions["ingest.receiver"] = Receiver(config)
    submit_of = wiring.submit
    if not config.broker_url:
        def submit_of():
            # this process analyzes and stores what hosts send, so it sends their
            # alerts too; with a broker the workers that store them do
            from coretriage.services import start_alerts

            start_alerts(wiring, threading.Event())
            return wiring.submit()
    app.extensions["ingest.handover"] = Handover(config.spool_dir, submit_of)
    app.register_blueprint(bp)
    if (config.data_dir / "ingest").is_dir():
        app.extensions["ingest.receiver"].sweep()  # what hosts left half-sent a week ago
    if config.spool_dir.is_dir():
        app.extensions["ingest.handover"].offer_waiting()
    _start_retention(wiring)


def _start_retention(wiring) -> None:
    """The central spool is pruned as a host's is (collector.toml's
    ``[retention]``): received bundles once analyzed and past their age, and
    captured files no stored crash needs. One thread per server process."""
    import logging
    import threading

    from coretriage.pipeline import retention_loop

    threading.Thread(target=retention_loop, args=(wiring.config, lambda: wiring.store, threading.Event(),
                                                  logging.getLogger("coretriage.retention").info),
                     name="retention", daemon=True).start()
