"""coretriage as a debuginfod server: ``/debuginfod/buildid/<id>/executable``
and ``/debuginfo`` (``/source/...`` answers 404: no sources are held) for
the files it holds (``coretriage.symbolserve``). An API token is required
(``Authorization: Bearer``; elfutils sends it from ``DEBUGINFOD_HEADERS_FILE``),
so ``DEBUGINFOD_URLS=https://coretriage.example/debuginfod`` gives an
engineer's gdb a production crash's container libraries."""

from __future__ import annotations

import os

from flask import Blueprint, Response, abort, current_app, g

from webui.security import is_admin, store

bp = Blueprint("debuginfod", __name__, url_prefix="/debuginfod")


def _token_required() -> None:
    if not g.get("via_token"):
        abort(Response("an API token is required (Authorization: Bearer)\n", 401,
                       {"WWW-Authenticate": 'Bearer realm="coretriage"'}, mimetype="text/plain"))


@bp.route("/buildid/<build_id>/<kind>")
def buildid(build_id: str, kind: str):
    from coretriage.symbolserve import open_file

    _token_required()
    fd = open_file(current_app.extensions["coretriage"], store(), build_id, kind, is_admin())
    if fd is None:
        abort(Response("not held here\n", 404, mimetype="text/plain"))
    size = os.fstat(fd).st_size
    stream = os.fdopen(fd, "rb")

    def body():
        with stream:
            while chunk := stream.read(1 << 20):
                yield chunk

    return Response(body(), mimetype="application/octet-stream",
                    headers={"Content-Length": str(size), "X-Debuginfod-Size": str(size)})


@bp.route("/buildid/<build_id>/source/<path:_source>")
def source(build_id: str, _source: str):
    _token_required()
    abort(Response("no sources are held here\n", 404, mimetype="text/plain"))
