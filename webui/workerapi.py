"""``/worker/v1``: what a worker on a machine without the central data dir
fetches, and where it says a crash is stored (``coretriage.remote`` is the
protocol, both sides). Only the workers' credential, the ``worker_token``
setting, is accepted here (``Authorization: Bearer <it>``); without that
setting the API is off (404). A host's or a user's token is refused, and the
worker token is no user token anywhere else. Errors are JSON, one line.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, send_file

from coretriage import remote

bp = Blueprint("workerapi", __name__, url_prefix=remote.API)


def _config():
    return current_app.extensions["coretriage"]


def _error(status: int, message: str):
    response = jsonify(error=message)
    response.status_code = status
    return response


@bp.before_request
def _authenticate():
    from flask import request

    expected = _config().worker_token
    if not expected:
        return _error(404, "no worker API on this server (set worker_token here and on the workers)")
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        return _error(401, "the workers' token is required (Authorization: Bearer <worker_token>)")
    return None


@bp.route("/bundles/<bid>", methods=("GET",))
def bundle(bid: str):
    listing = remote.bundle_listing(_config(), bid)
    if listing is None:
        return _error(404, f"no received bundle {bid[:80]}")
    return jsonify(listing)


@bp.route("/bundles/<bid>/<part>", methods=("GET",))
def part(bid: str, part: str):
    path = remote.part_path(_config(), bid, part)
    if path is None:
        return _error(404, f"bundle {bid[:80]} has no {part[:40]}")
    return send_file(path, mimetype="application/zstd", conditional=False, etag=False)


@bp.route("/files/<digest>", methods=("GET",))
def file(digest: str):
    path = remote.stored_file(_config(), digest)
    if path is None:
        return _error(404, f"no stored file {digest[:80]}")
    return send_file(path, mimetype="application/octet-stream", conditional=False, etag=False)


@bp.route("/bundles/<bid>/done", methods=("POST",))
def done(bid: str):
    try:
        finished = remote.finish(_config(), current_app.extensions["store"], bid)
    except remote.RemoteError as exc:
        return _error(409, str(exc))
    if finished is None:
        return _error(409, f"no crash of bundle {bid[:80]} is stored")
    return jsonify(finished)
