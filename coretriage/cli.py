"""``coretriage``: the command line's parser and entry point. The commands
live in ``coretriage.commands`` (one-shot) and ``coretriage.services`` (host
set-up and long-running). Every command takes the global ``--data-dir``.
Errors are one line on stderr and a non-zero exit; a traceback is only shown
with CORETRIAGE_DEBUG=1."""

from __future__ import annotations

import argparse
import os
import sys

from analyzer.errors import CoretriageError
from coretriage.commands import (EXIT_ERROR, cmd_db_upgrade, cmd_demo, cmd_export, cmd_gdb, cmd_host_add,
                                 cmd_host_list, cmd_host_revoke, cmd_ingest,
                                 cmd_list, cmd_notify, cmd_prune, cmd_reprocess, cmd_show, cmd_symbols,
                                 cmd_token_add, cmd_token_list, cmd_token_revoke, cmd_user_add)
from coretriage.services import (cmd_collector_run, cmd_hostsetup_doctor, cmd_hostsetup_install,
                                 cmd_hostsetup_uninstall, cmd_run, cmd_web, cmd_worker)


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
    a.add_argument("--days", type=int, help="days until it expires (default: the token_days setting, 90)")
    a.set_defaults(func=cmd_token_add)
    a = s.add_parser("list", help="API tokens: id, user, made, expires, last used (never the token)")
    a.add_argument("--user", help="only this user's")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_token_list)
    a = s.add_parser("revoke", help="revoke an API token at once, by the id `token list` shows")
    a.add_argument("id")
    a.set_defaults(func=cmd_token_revoke)

    s = sub.add_parser("host", help="hosts that upload their crashes here").add_subparsers(
        dest="host_command", required=True)
    a = s.add_parser("add", help="register a host; prints its token alone on the last line (shown once)")
    a.add_argument("name")
    a.set_defaults(func=cmd_host_add)
    a = s.add_parser("list", help="hosts: last heartbeat, version, core_pattern, spool, last crash, markers")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_host_list)
    a = s.add_parser("revoke", help="refuse a host's token from now on")
    a.add_argument("name")
    a.set_defaults(func=cmd_host_revoke)

    s = sub.add_parser("notify", help="alert channels: webhooks and email").add_subparsers(
        dest="notify_command", required=True)
    a = s.add_parser("add", help="add a channel, or replace the one of that name")
    a.add_argument("name")
    a.add_argument("--webhook", metavar="URL", help="POST each alert as JSON to this URL")
    a.add_argument("--email", metavar="ADDRESS", help="mail each alert (the smtp_url setting)")
    a.add_argument("--secret", help="sign webhook bodies: X-Coretriage-Signature: sha256=HMAC")
    a.add_argument("--events", default="new,regression,spike", help="kinds to send (default: all)")
    a.add_argument("--executable", metavar="GLOB", help="only crashes of matching executables")
    a.add_argument("--host", metavar="GLOB", help="only crashes on matching hosts")
    a.add_argument("--image", metavar="GLOB", help="only crashes in containers of matching images")
    a.add_argument("--quiet", metavar="PERIOD", default="0",
                   help="after an alert of a group, none of that group to this channel for so long (e.g. 15m)")
    a.add_argument("--digest", metavar="PERIOD", default="0",
                   help="collect the events and send one message per PERIOD (e.g. 1h, 15m, 3600)")
    a.set_defaults(func=cmd_notify)
    a = s.add_parser("list", help="the channels")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_notify)
    for verb, text in (("remove", "remove a channel"), ("test", "send a test alert to a channel now")):
        a = s.add_parser(verb, help=text)
        a.add_argument("name")
        a.set_defaults(func=cmd_notify)

    s = sub.add_parser("symbols", help="the local symbol store (debug files by build-id)").add_subparsers(
        dest="symbols_command", required=True)
    a = s.add_parser("add", help="add debug files, .build-id trees or .deb/.ddeb dbgsym packages")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--any", action="store_true", help="keep files whose build-id no stored crash uses yet")
    a.set_defaults(func=cmd_symbols)
    a = s.add_parser("list", help="the stored symbol files")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_symbols)
    a = s.add_parser("remove", help="remove the files of one build-id")
    a.add_argument("build_id")
    a.set_defaults(func=cmd_symbols)

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

    s = sub.add_parser("worker", help="a Celery worker analyzing the crashes of the queue_name queue")
    s.add_argument("--concurrency", type=int, default=None,
                   help="analyses at a time (default: the worker_concurrency setting, 2)")
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
    s.add_argument("--workers", type=int, default=0, metavar="N",
                   help="serve with gunicorn and N worker processes (pip install 'coretriage[web]'); "
                        "0, the default: one process, for one host")
    s.set_defaults(func=cmd_web)
    return p


def entry() -> None:
    """The ``coretriage`` command. A one-shot command (ingest, list, show,
    export) has committed its work and printed its answer when it returns, so
    it leaves without the interpreter's teardown of every module it imported:
    SQLAlchemy's alone is a tenth of a cold ``ingest``. Whatever any command
    creates is private to the user running it (``coretriage.datadir``)."""
    from coretriage.datadir import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)
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
