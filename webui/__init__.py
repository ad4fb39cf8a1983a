"""The web UI: ``create_app(test_config=None)`` builds a Flask app with one
blueprint per area (auth, groups, crashes, api, alerts, hosts, metrics,
ingest: where hosts upload, and workerapi: what remote workers fetch). Nothing is created at import."""

from __future__ import annotations

import os
import secrets


def _secret_key(config) -> str:
    """A random key kept in the data dir: it signs the login form's CSRF
    token (webui.sessions), which then survives restarts."""
    from coretriage.datadir import open_data_dir

    path = open_data_dir(config) / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _log_to_stderr() -> None:
    """The server's own lines (ingest hand-over, retention) go where
    gunicorn's and the dev server's go, unless the embedding app set up logging."""
    import logging

    ours = logging.getLogger("coretriage")
    if not ours.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)


def create_app(test_config: dict | None = None):
    from flask import Flask

    from coretriage.wiring import Wiring

    test_config = test_config or {}
    # WIRING: a running service's own; CORETRIAGE: a Config; DATA_DIR: load one
    wiring = test_config.get("WIRING")
    if wiring is None:
        config = test_config.get("CORETRIAGE")
        wiring = Wiring(config) if config is not None else Wiring.load(test_config.get("DATA_DIR"))
    config = wiring.config
    app = Flask(__name__)
    # sessions live in the database (webui.sessions); the key signs only the pre-login CSRF token
    app.config.update(SECRET_KEY=_secret_key(config), MAX_CONTENT_LENGTH=64 * 1024)
    app.config.update(test_config)
    if config.trusted_proxies:
        # only then are X-Forwarded-For/-Proto believed: the client's address
        # (the login throttle) and https (Secure cookies)
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.trusted_proxies, x_proto=config.trusted_proxies)
    app.extensions["coretriage"] = config
    app.extensions["store"] = wiring.store

    from webui import alerts, api, auth, crashes, groups, hosts, ingest, metrics
    from webui.security import install

    install(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(groups.bp)
    app.register_blueprint(crashes.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(hosts.bp)
    _log_to_stderr()
    ingest.register(app, wiring)  # hosts upload here (webui/ingest.py)
    from webui import debuginfod, workerapi
    app.register_blueprint(debuginfod.bp)
    app.register_blueprint(workerapi.bp)  # remote workers fetch here (coretriage.remote)
    from webui import filters
    filters.register(app)
    _errors_and_icon(app)
    return app


def _errors_and_icon(app) -> None:
    from flask import Response, render_template, request
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(HTTPException)
    def error_page(exc: HTTPException):
        # keep what the exception adds (Allow on a 405, Retry-After on a 429)
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        if request.path.startswith(("/api/", "/ingest/", "/worker/")):  # the APIs answer errors in JSON
            from flask import jsonify
            return jsonify(error=exc.description or exc.name), exc.code, headers
        return render_template("error.html", error=exc), exc.code, headers

    @app.route("/favicon.ico")
    def favicon():
        return Response(ICON, mimetype="image/svg+xml")


ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
        'fill="#1d2330"/><path d="M4 11l3-6 2 4 1-2 2 4" stroke="#e74c3c" fill="none" stroke-width="1.5"/></svg>')
