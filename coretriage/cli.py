"""``coretriage``: the command line. Every command takes the global
``--data-dir``. Errors are one line on stderr and a non-zero exit; a
traceback is only shown with CORETRIAGE_DEBUG=1."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from analyzer.errors import CoretriageError

EXIT_ERROR = 1
EXIT_USAGE = 2


class UserError(CoretriageError):
    """A command used wrongly: a bad id, a missing option, a refused value."""


def _wiring(args):
    from coretriage.wiring import Wiring

    return Wiring.load(args.data_dir)


def _context(args):
    w = _wiring(args)
    return w.config, w.store


def _parse_ref(ref: str) -> tuple[str, str | int]:
    ref = ref.strip()
    if len(ref) > 1 and ref[0] == "g" and ref[1:].isdigit():
        return "group", int(ref[1:])
    if len(ref) == 13 and ref[0] == "c" and all(ch in "0123456789abcdef" for ch in ref[1:]):
        return "crash", ref
    raise UserError(f"{ref!r} is neither a crash id (c + 12 hex digits) nor a group id (g + number)")


def cmd_ingest(args) -> int:
    # A cold ingest is mostly start-up: gdb's, Python's imports and the
    # store's (SQLAlchemy). gdb starts first, the analyzer is imported while it
    # does, and the store is opened in the background while gdb works.
    from analyzer.gdb import Gdb, GdbError

    wiring = _wiring(args)
    config = wiring.config
    try:
        gdb = Gdb(config.gdb_budget()).start()
    except GdbError:
        gdb = None  # the analysis reports it
    try:
        from analyzer.problems import NOT_A_CORE
        from coretriage.ingest import ingest

        wiring.open_store_in_background()
        done = ingest(config, lambda: wiring.store, Path(args.core), Path(args.exe) if args.exe else None,
                      Path(args.sysroot) if args.sysroot else None, gdb=gdb)
    finally:
        if gdb is not None:
            gdb.close()
    a, sig = done.analysis, done.signature
    if args.json:
        from coretriage.reports import key_frame_list
        print(json.dumps({"crash_id": done.crash.id, "group_id": done.crash.group_ref, "new": done.new,
                          "signature": sig.text, "quality": sig.quality,
                          "key_frames": key_frame_list(done.crash),
                          "signal": a.signal.name if a.signal else None,
                          "executable": a.executable, "problems": [p.to_dict() for p in a.problems]}))
    else:
        state = "stored" if done.new else "already stored"
        print(f"{done.crash.id} {state} in {done.crash.group_ref}: {sig.text}")
        for p in a.problems:
            print(f"  note: {p}")
    if not a.threads and any(p.code == NOT_A_CORE for p in a.problems):
        print(f"coretriage: error: {args.core}: {a.problems[0]} (recorded as {done.crash.id})", file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_list(args) -> int:
    from coretriage.migrations import HEAD
    from coretriage.reports import when
    from coretriage.sqlitelist import recent_groups

    wiring = _wiring(args)
    groups = recent_groups(wiring.config.database_url, HEAD, args.limit)
    if groups is None:  # not a plain SQLite file at head: the store knows what to do
        groups = wiring.store.groups(limit=args.limit)
    if args.json:
        print(json.dumps([{"group_id": g.ref, "signature": g.signature, "count": g.count,
                           "first_seen": g.first_seen, "last_seen": g.last_seen, "executable": g.executable,
                           "signal": g.signal, "state": g.state, "quality": g.quality} for g in groups]))
        return 0
    if not groups:
        print("no crashes yet")
        return 0
    print(f"{'GROUP':<7} {'COUNT':>5}  {'FIRST SEEN':<23}  {'LAST SEEN':<23}  {'SIGNAL':<8} {'STATE':<12} SIGNATURE")
    for g in groups:
        print(f"{g.ref:<7} {g.count:>5}  {when(g.first_seen):<23}  {when(g.last_seen):<23}  "
              f"{g.signal or '-':<8} {g.state:<12} {g.signature}")
    return 0


def cmd_show(args) -> int:
    from coretriage.reports import crash_report, group_report

    kind, ref = _parse_ref(args.id)
    _, store = _context(args)
    fmt = "json" if args.json else "text"
    if kind == "crash":
        print(crash_report(store.crash(ref), fmt))
    else:
        print(group_report(store.group(ref), store.crashes_of(ref), fmt))
    return 0


def cmd_export(args) -> int:
    from coretriage.reports import crash_report, group_report

    kind, ref = _parse_ref(args.id)
    _, store = _context(args)
    if kind == "crash":
        print(crash_report(store.crash(ref), args.format))
    else:
        print(group_report(store.group(ref), store.crashes_of(ref), args.format))
    return 0


def cmd_gdb(args) -> int:
    from coretriage.ingest import decompressed

    kind, ref = _parse_ref(args.id)
    config, store = _context(args)
    if kind == "group":
        store.group(ref)  # NotFound: "no group gN"
        rows = store.crashes_of(ref, limit=1)
        if not rows:
            raise UserError(f"group g{ref} has no crashes")
        row = rows[0]
    else:
        row = store.crash(ref)
    if not row.core_file or not (config.data_dir / row.core_file).is_file():
        raise UserError(f"crash {row.id} has no stored core (metadata only)")
    gdb = shutil.which("gdb")
    if gdb is None:
        raise UserError("gdb is not installed (apt-get install gdb)")
    with decompressed(config.data_dir / row.core_file, config.tmp_dir) as core:
        argv = [gdb, "-q", "-iex", "set auto-load off"]
        if row.sysroot:
            argv += ["-iex", f"set sysroot {row.sysroot}"]
        if row.exe_file:
            argv += [row.exe_file]
        argv += ["-c", str(core), *args.gdb_args]
        return subprocess.call(argv)


def cmd_reprocess(args) -> int:
    from coretriage.ingest import reprocess

    config, store = _context(args)
    result = reprocess(config, store, progress=lambda cid, sig: print(f"{cid}: {sig}") if args.verbose else None)
    print(f"reprocessed {result['crashes']} crashes; {result['moved']} moved to another group")
    return 0


def cmd_prune(args) -> int:
    """Keep the newest cores of each group; older crashes keep their analysis."""
    if args.keep < 1:
        raise UserError("--keep must be at least 1: every group keeps a core to open in gdb")
    config, store = _context(args)
    freed = 0
    for crash_id, core_file in store.cores_beyond(args.keep):
        path = config.data_dir / core_file
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
        store.forget_core(crash_id)
        if args.verbose:
            print(f"{crash_id}: core removed", flush=True)
    print(f"kept the {args.keep} newest cores of each group; freed {freed / (1 << 20):.1f} MiB")
    return 0


def cmd_demo(args) -> int:
    from coretriage.demo import run_demo

    config, store = _context(args)
    run_demo(config, store)
    args.limit, args.json = 50, False
    print()
    return cmd_list(args)


def cmd_user_add(args) -> int:
    import getpass

    from coretriage.users import ROLES, hash_password

    if args.role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if not args.name or len(args.name) > 64 or not args.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError("user names are 1-64 letters, digits, '-', '_' or '.'")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise UserError("the passwords differ")
    if len(password) < 8:
        raise UserError("passwords need at least 8 characters")
    _, store = _context(args)
    store.add_user(args.name, hash_password(password), args.role)
    print(f"user {args.name} ({args.role}) saved")
    return 0


def cmd_token_add(args) -> int:
    from coretriage.users import new_token, token_hash

    _, store = _context(args)
    if store.user_record(args.name) is None:
        raise UserError(f"no user {args.name}; add it first with: coretriage user add {args.name}")
    token = new_token()
    store.add_token(args.name, token_hash(token))
    print(token)  # shown once; only its hash is stored
    return 0


def cmd_web(args) -> int:
    from webui import create_app

    app = create_app({"WIRING": _wiring(args)})
    print(f"coretriage web UI on http://{args.host}:{args.port}/ (for production: "
          f"gunicorn -w 4 -b {args.host}:{args.port} 'webui:create_app()')", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0


def cmd_collector_run(args) -> int:
    import logging
    import signal
    import threading

    from collector.watch import Collector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    wiring = _wiring(args)
    config = wiring.config
    dump_dirs = tuple(Path(d) for d in (*config.dump_dirs, *(args.dump_dir or [])))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    collector = Collector(config.spool_dir, wiring.submit(), dump_dirs)
    if args.socket:
        from collector.socket_server import SOCKET_NAME, serve
        path = str(config.data_dir / SOCKET_NAME)
        threading.Thread(target=serve, args=(path, str(config.data_dir), stop), daemon=True).start()
        print(f"listening for cores on {path} (core_pattern @{path})", flush=True)
    print(f"collecting from {config.spool_dir}" + "".join(f" and {d}" for d in dump_dirs)
          + (" via the queue" if config.broker_url else ", analyzing here"), flush=True)
    collector.run(stop)
    return 0


def cmd_worker(args) -> int:
    from coretriage.tasks import host_queue

    wiring = _wiring(args)
    if not wiring.config.broker_url:
        raise UserError("no broker_url configured (coretriage.toml or CORETRIAGE_BROKER_URL); "
                        "without one the collector analyzes in-process")
    app = wiring.celery()  # importing coretriage.tasks registered the task
    app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={args.concurrency}",
                     "-Q", host_queue(), "--without-gossip", "--without-mingle"])
    return 0


def handler_argv(data_dir: Path) -> list[str]:
    """What the kernel runs for each crash: the light handler module, not this CLI."""
    from collector.corepattern import SPECIFIERS

    return [sys.executable, "-I", "-m", "collector.handler", "-d", str(data_dir), *SPECIFIERS]


def cmd_hostsetup_install(args) -> int:
    from coretriage.config import load_config
    from collector.hostsetup.install import install

    config = load_config(args.data_dir)  # not _context: no store, nothing created before the record
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


def cmd_db_upgrade(args) -> int:
    """Bring the database's schema to this coretriage's (Alembic ``upgrade
    head``); ``db current`` only reports it. Neither opens a Store, whose
    opening refuses a shared database that is behind."""
    from coretriage import migrations
    from coretriage.config import load_config

    config = load_config(args.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if args.db_command == "current":
        found = migrations.current(config.database_url)
        state = "up to date" if found == migrations.HEAD else f"this coretriage needs {migrations.HEAD}"
        print(f"{found or 'empty'} ({state})")
        return 0
    before, after = migrations.upgrade(config.database_url)
    print(f"already at {after}" if before == after else f"upgraded from {before or 'empty'} to {after}")
    return 0


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
    wiring = _wiring(args)
    config, store = wiring.config, wiring.store
    run_demo(config, store)
    login = ""
    if store.user_count() == 0:
        password = secrets.token_urlsafe(12)
        store.add_user("admin", hash_password(password), "admin")
        secret = config.data_dir / "admin-password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
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
    threads = [threading.Thread(target=collector.run, args=(stop,), daemon=True)]
    server = make_server(args.host, args.port, create_app({"WIRING": wiring}), threaded=True)
    threads.append(threading.Thread(target=server.serve_forever, daemon=True))
    for t in threads:
        t.start()
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


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("coretriage")
    except PackageNotFoundError:  # run from a checkout that pip never saw
        return "unknown (not installed)"


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs more
    than the rest of the parser."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"coretriage {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coretriage", description="Capture, analyze and group core dumps.")
    p.add_argument("--version", action=_Version, help="print the installed version and exit")
    p.add_argument("--data-dir", help="where crashes, cores and the database live "
                                      "(default: $CORETRIAGE_DATA_DIR or /var/lib/coretriage)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", help="analyze a core now and store it in its group")
    s.add_argument("core")
    s.add_argument("--exe", help="the executable that crashed, if not at its path in the core")
    s.add_argument("--sysroot", help="a directory holding the crashed program's files (a container's root)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ingest, one_shot=True)

    s = sub.add_parser("list", help="crash groups, most recent first")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=int, default=100)
    s.set_defaults(func=cmd_list, one_shot=True)

    s = sub.add_parser("show", help="one crash or group, every field")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show, one_shot=True)

    s = sub.add_parser("export", help="a backtrace report for a crash or group")
    s.add_argument("id")
    s.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    s.set_defaults(func=cmd_export, one_shot=True)

    s = sub.add_parser("gdb", help="open gdb on a stored core with its executable")
    s.add_argument("id")
    s.add_argument("gdb_args", nargs=argparse.REMAINDER, help="passed on to gdb")
    s.set_defaults(func=cmd_gdb)

    s = sub.add_parser("reprocess", help="analyze every stored core again and regroup")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_reprocess)

    s = sub.add_parser("prune", help="remove stored cores beyond the newest N of each group")
    s.add_argument("--keep", type=int, default=5)
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser("demo", help="analyze the sample cores and show their groups")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("user", help="web UI users").add_subparsers(dest="user_command", required=True)
    a = s.add_parser("add", help="add a user, or change its password and role")
    a.add_argument("name")
    a.add_argument("--role", default="viewer", help="viewer (default) or admin")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.set_defaults(func=cmd_user_add)

    s = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    a = s.add_parser("add", help="make an API token for a user (printed once)")
    a.add_argument("name")
    a.set_defaults(func=cmd_token_add)

    s = sub.add_parser("collector", help="the crash collector").add_subparsers(dest="collector_command",
                                                                               required=True)
    a = s.add_parser("run", help="watch the spool and dump directories and hand crashes to the analysis")
    a.add_argument("--dump-dir", action="append", help="also take cores written to this directory")
    a.add_argument("--socket", action="store_true",
                   help="also receive cores on DATA/coretriage.sock (core_pattern '@', Linux 6.16+)")
    a.set_defaults(func=cmd_collector_run)

    s = sub.add_parser("host-setup", help="set this host up to capture every crash").add_subparsers(
        dest="hostsetup_command", required=True)
    a = s.add_parser("install", help="core_pattern, core_pipe_limit, Docker core ulimits, systemd units")
    a.add_argument("--replace", action="store_true", help="take over from Apport, systemd-coredump or abrt")
    a.add_argument("--socket", action="store_true",
                   help="cores go to the collector daemon's socket (Linux 6.16+; run `collector run --socket`) "
                        "instead of a handler started per crash")
    a.set_defaults(func=cmd_hostsetup_install)
    a = s.add_parser("uninstall", help="put back everything install changed")
    a.add_argument("--force", action="store_true", help="restore even what someone changed since")
    a.set_defaults(func=cmd_hostsetup_uninstall)
    a = s.add_parser("doctor", help="what would stop a crash from being captured")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_hostsetup_doctor)

    s = sub.add_parser("worker", help="a Celery worker analyzing this host's crashes")
    s.add_argument("--concurrency", type=int, default=2)
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("run", help="the whole service on this host: collector, analysis and web UI")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    s.add_argument("--no-host-setup", action="store_true", help="do not touch core_pattern")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("db", help="the database schema").add_subparsers(dest="db_command", required=True)
    a = s.add_parser("upgrade", help="upgrade the schema to this coretriage's (run once per upgrade)")
    a.set_defaults(func=cmd_db_upgrade)
    a = s.add_parser("current", help="the schema revision of the database")
    a.set_defaults(func=cmd_db_upgrade)

    s = sub.add_parser("web", help="serve the web UI")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(func=cmd_web)
    return p


def entry() -> None:
    """The ``coretriage`` command. A one-shot command (ingest, list, show,
    export) has committed its work and printed its answer when it returns, so
    it leaves without the interpreter's teardown of every module it imported:
    SQLAlchemy's alone is a tenth of a cold ``ingest``."""
    sys.exit(main(exit_now=True))


def main(argv: list[str] | None = None, exit_now: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code = _run(args)
    if exit_now and getattr(args, "one_shot", False):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(code)
    return code


def _run(args) -> int:
    try:
        return args.func(args)
    except CoretriageError as exc:
        print(f"coretriage: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback to a user
        if os.environ.get("CORETRIAGE_DEBUG"):
            raise
        print(f"coretriage: error: {type(exc).__name__}: {one_line(exc)} (a bug: please report it; "
              "CORETRIAGE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_ERROR


def one_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    entry()
