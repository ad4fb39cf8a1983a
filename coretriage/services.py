"""The commands that set a host up or keep running: host-setup, ``collector
run``, ``worker``, ``web`` and ``run`` (all of it on one host). The
collector, the worker and ``run`` also send alerts (``coretriage.notify``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from coretriage.commands import UserError, wiring_for


def start_alerts(wiring, stop):
    """The alert sender, in a thread of its own: never in the way of capture
    or analysis. One per wiring: ``run`` and the web server it serves (which
    starts one once it analyzes an upload) share theirs."""
    import logging
    import threading

    from coretriage.notify import alert_loop

    with wiring.lock:
        if wiring.alert_sender is None:
            wiring.alert_sender = threading.Thread(
                target=alert_loop, args=(wiring.config, lambda: wiring.store, stop,
                                         logging.getLogger("coretriage.alerts").warning), name="alerts", daemon=True)
            wiring.alert_sender.start()
        return wiring.alert_sender


def _fork_alert_sender(wiring) -> int:
    """The worker's alert sender, as a process of its own, forked before
    Celery starts: Celery's pool forks its children later, and a thread
    running then (a lock held, a database connection open) would be copied
    into them half-way. It ends with the worker (PR_SET_PDEATHSIG)."""
    import ctypes
    import logging
    import signal
    import threading

    pid = os.fork()
    if pid:
        return pid
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)  # the worker is already gone
        from coretriage.notify import alert_loop

        alert_loop(wiring.config, lambda: wiring.store, threading.Event(),
                   logging.getLogger("coretriage.alerts").warning)
    finally:
        os._exit(0)


def cmd_web(args) -> int:
    from webui import create_app

    wiring = wiring_for(args)  # the data dir and the schema checked once, before any worker starts
    if args.workers > 0:
        return _exec_gunicorn(wiring, args)
    app = create_app({"WIRING": wiring})
    print(f"coretriage web UI on http://{args.host}:{args.port}/ (for production: "
          f"coretriage web --workers 5, i.e. gunicorn 'webui:create_app()')", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


def _exec_gunicorn(wiring, args) -> int:
    """Become gunicorn serving ``webui:create_app()``: each worker builds its
    own app and database pool after the fork (no --preload, so no connection
    is shared between processes); the data dir travels in CORETRIAGE_DATA_DIR."""
    import importlib.util

    if importlib.util.find_spec("gunicorn") is None:
        raise UserError("--workers needs gunicorn: pip install 'coretriage[web]' (or pip install gunicorn)")
    wiring.store.close()
    bind = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    env = dict(os.environ, CORETRIAGE_DATA_DIR=str(wiring.config.data_dir.absolute()))
    print(f"coretriage web UI on http://{bind}/ with gunicorn, {args.workers} workers", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind", bind,
                               "--access-logfile", "-", "webui:create_app()"], env)
    return 1  # not reached


def cmd_collector_run(args) -> int:
    import logging
    import signal
    import threading

    from collector.watch import Collector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    wiring = wiring_for(args)
    config = wiring.config
    dump_dirs = tuple(Path(d) for d in (*config.dump_dirs, *(args.dump_dir or [])))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    collector = Collector(config.spool_dir, wiring.submit(), dump_dirs)
    from coretriage.pipeline import retention_loop
    uploading = bool(config.server_url)
    # a host that uploads holds no store: the central server analyzes, stores and alerts
    threading.Thread(target=retention_loop, args=(config, (lambda: None) if uploading else (lambda: wiring.store),
                                                   stop, logging.getLogger("coretriage.retention").info),
                     name="retention", daemon=True).start()
    if uploading:
        wiring.uploader().start(heartbeat=True)
    else:
        start_alerts(wiring, stop)
    if args.socket:
        from collector.socket_server import SOCKET_NAME, serve
        path = str(config.data_dir / SOCKET_NAME)
        threading.Thread(target=serve, args=(path, str(config.data_dir), stop), daemon=True).start()
        print(f"listening for cores on {path} (core_pattern @{path})", flush=True)
    print(f"collecting from {config.spool_dir}" + "".join(f" and {d}" for d in dump_dirs)
          + (f", uploading to {config.server_url}" if uploading else
             " via the queue" if config.broker_url else ", analyzing here"), flush=True)
    try:
        collector.run(stop)
    finally:
        if uploading:
            wiring.uploader().close()
    return 0


def cmd_worker(args) -> int:
    wiring = wiring_for(args)
    config = wiring.config
    if not config.broker_url:
        raise UserError("no broker_url configured (coretriage.toml or CORETRIAGE_BROKER_URL); "
                        "without one the collector analyzes in-process")
    if config.central_url:
        from coretriage.remote import Central

        Central(config)  # a central_url without worker_token, or not http(s): one line now, not at each task
    _fork_alert_sender(wiring)
    app = wiring.celery()  # importing coretriage.tasks registered the task
    concurrency = args.concurrency or config.worker_concurrency
    app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={concurrency}",
                     "-Q", config.queue_name, "--without-gossip", "--without-mingle"])
    return 0


def handler_argv(data_dir: Path) -> list[str]:
    """What the kernel runs for each crash: the light handler module, not this CLI."""
    from collector.corepattern import SPECIFIERS

    return [sys.executable, "-I", "-m", "collector.handler", "-d", str(data_dir), *SPECIFIERS]


def cmd_hostsetup_install(args) -> int:
    from coretriage.config import load_config
    from collector.hostsetup.install import install

    config = load_config(args.data_dir)  # not _context: no store, nothing created before the record
    if config.data_dir.exists():
        from coretriage.datadir import open_data_dir
        open_data_dir(config)  # an older, looser data dir is made 0700 (install refuses one not root's)
    socket = None
    if args.socket:
        from collector.socket_server import SOCKET_NAME, kernel_supports_socket
        if not kernel_supports_socket():
            raise UserError(f"this kernel ({os.uname().release}) cannot send cores to a socket (Linux 6.16+)")
        socket = config.data_dir / SOCKET_NAME
    report = install(config.data_dir, handler_argv(config.data_dir), replace_existing=args.replace,
                     socket=socket)
    print(report.text())
    return 0


def cmd_hostsetup_uninstall(args) -> int:
    from coretriage.config import load_config
    from collector.hostsetup.install import uninstall

    report = uninstall(load_config(args.data_dir).data_dir, force=args.force)
    print(report.text())
    return 1 if report.left else 0


def cmd_hostsetup_doctor(args) -> int:
    from coretriage.config import load_config
    from collector.hostsetup.doctor import checks_json, exit_code, format_checks, run_checks

    checks = run_checks(load_config(args.data_dir).data_dir)
    print(checks_json(checks) if args.json else format_checks(checks))
    return exit_code(checks)


def cmd_run(args) -> int:
    """The whole single-host service on embedded defaults: sample groups,
    host set up (as root), collector and web UI; Ctrl-C puts the host back."""
    import logging
    import secrets
    import signal
    import threading

    from werkzeug.serving import make_server

    from collector.watch import Collector
    from coretriage.demo import run_demo
    from coretriage.users import hash_password
    from webui import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    wiring = wiring_for(args)
    config, store = wiring.config, wiring.store
    run_demo(config, store)
    login = ""
    if store.user_count() == 0:
        password = secrets.token_urlsafe(12)
        store.add_user("admin", hash_password(password), "admin")
        secret = config.data_dir / "admin-password"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        login = f"log in as admin with password {password} (saved in {secret})"
    installed = False
    if os.geteuid() == 0 and not args.no_host_setup:
        from collector.hostsetup.install import install, uninstall
        try:
            print(install(config.data_dir, handler_argv(config.data_dir)).text())
            installed = True
        except Exception as exc:
            print(f"host-setup not installed: {exc}; crashes on this host are not captured", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    collector = Collector(config.spool_dir, wiring.submit(), config.dump_dirs)
    from coretriage.pipeline import retention_loop
    threads = [threading.Thread(target=collector.run, args=(stop,), daemon=True),
               threading.Thread(target=retention_loop, args=(config, lambda: store, stop, logging.getLogger(
                   "coretriage.retention").info), name="retention", daemon=True)]
    server = make_server(args.host, args.port, create_app({"WIRING": wiring}), threaded=True)
    threads.append(threading.Thread(target=server.serve_forever, daemon=True))
    for t in threads:
        t.start()
    start_alerts(wiring, stop)
    print(f"\ncoretriage is running: web UI on http://{args.host}:{server.port}/"
          + (f"; {login}" if login else "; log in with your coretriage user")
          + ("\ncrashes on this host and in its containers are captured; Ctrl-C stops and puts the host back"
             if installed else ""), flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        for t in threads:
            t.join(timeout=10)
        if installed:
            print(uninstall(config.data_dir).text())
    return 0
