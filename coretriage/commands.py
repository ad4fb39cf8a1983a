"""The one-shot commands: crashes (ingest, list, show, export, gdb,
reprocess, prune, demo), users, tokens and the database schema. Each takes
the parsed arguments and returns an exit code; ``coretriage.cli`` parses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from analyzer.errors import CoretriageError

EXIT_ERROR = 1


class UserError(CoretriageError):
    """A command used wrongly: a bad id, a missing option, a refused value."""


def wiring_for(args):
    """The wiring of a command, its data dir made private (``coretriage.datadir``)."""
    from coretriage.datadir import open_data_dir
    from coretriage.wiring import Wiring

    wiring = Wiring.load(args.data_dir)
    open_data_dir(wiring.config)
    return wiring


def _context(args):
    w = wiring_for(args)
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
    # store's. The analysis sandbox (and gdb in it) starts first, the
    # analyzer is imported while it does, and the store is opened in the
    # background while gdb works.
    from analyzer.sandbox import SandboxPolicy, analysis_sandbox
    # both processes use these: imported once, before the sandbox forks
    import analyzer.confined  # noqa: F401
    import analyzer.python  # noqa: F401
    import analyzer.secrets  # noqa: F401

    wiring = wiring_for(args)
    config = wiring.config
    gdb = analysis_sandbox(config.gdb_budget(), SandboxPolicy.default(config.data_dir, config.tmp_dir,
                                                                     config.gdb_memory)).start()
    try:
        from analyzer.problems import NOT_A_CORE
        from coretriage.ingest import ingest

        wiring.open_store_in_background()
        done = ingest(config, lambda: wiring.store, Path(args.core), Path(args.exe) if args.exe else None,
                      Path(args.sysroot) if args.sysroot else None, gdb=gdb)
    except BaseException:
        wiring.close()  # no store opener left running behind an error (in-process callers go on)
        raise
    finally:
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

    wiring = wiring_for(args)
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
    from coretriage.masking import secret_names
    from coretriage.reports import crash_report, group_report

    kind, ref = _parse_ref(args.id)
    config, store = _context(args)
    fmt, names = "json" if args.json else "text", secret_names(config.data_dir)
    if kind == "crash":
        print(crash_report(store.crash(ref), fmt, names))
    else:
        print(group_report(store.group(ref), store.crashes_of(ref), fmt, names))
    return 0


def cmd_export(args) -> int:
    from coretriage.masking import secret_names
    from coretriage.reports import crash_report, group_report

    kind, ref = _parse_ref(args.id)
    config, store = _context(args)
    names = secret_names(config.data_dir)
    if kind == "crash":
        print(crash_report(store.crash(ref), args.format, names))
    else:
        print(group_report(store.group(ref), store.crashes_of(ref), args.format, names))
    return 0


def cmd_gdb(args) -> int:
    from coretriage.ingest import crash_sysroot, decompressed

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
    from analyzer.arch import host_arch
    from analyzer.gdb import MULTIARCH

    arch = row.analysis.get("architecture")
    name = MULTIARCH if arch and arch != host_arch() else "gdb"  # another machine's core
    gdb = shutil.which(name)
    if gdb is None:
        raise UserError(f"{name} is not installed (apt-get install {name})")
    with crash_sysroot(config, row.sysroot, row.meta.get("files")) as sysroot, \
            decompressed(config.data_dir / row.core_file, config.tmp_dir) as core:
        argv = [gdb, "-q", "-iex", "set auto-load off"]
        if sysroot:
            argv += ["-iex", f"set sysroot {sysroot}"]
        if row.exe_file:
            argv += [row.exe_file]
        argv += ["-c", str(core), *args.gdb_args]
        return subprocess.call(argv)


def cmd_reprocess(args) -> int:
    from coretriage.ingest import reprocess

    config, store = _context(args)
    result = reprocess(config, store, progress=lambda cid, sig: print(f"{cid}: {sig}") if args.verbose else None)
    print(f"reprocessed {result['crashes']} crashes; {result['moved']} moved to another group"
          + (f"; {result['alerts']} new group(s) alerted" if result["alerts"] else ""))
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
    new = store.add_user(args.name, hash_password(password), args.role)
    # a changed password or role ends the user's web sessions (Store.add_user)
    print(f"user {args.name} ({args.role}) saved" + ("" if new else "; its web sessions were ended"))
    return 0


def cmd_token_add(args) -> int:
    import time

    from coretriage.users import new_token, token_hash

    config, store = _context(args)
    if store.user_record(args.name) is None:
        raise UserError(f"no user {args.name}; add it first with: coretriage user add {args.name}")
    days = config.token_days if args.days is None else args.days
    if not 0 < days <= 3650:
        raise UserError("--days must be between 1 and 3650")
    token = new_token()
    store.add_token(args.name, token_hash(token), expires=time.time() + days * 86400)
    print(token)  # shown once; only its hash is stored
    return 0


def cmd_token_list(args) -> int:
    """Tokens by their short id, never the token: user, made, expires, last used."""
    import time
    from dataclasses import asdict

    from coretriage.reports import when

    _, store = _context(args)
    rows = store.tokens(args.user)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    now = time.time()
    table = [("ID", "USER", "CREATED", "EXPIRES", "LAST USED")]
    for r in rows:
        expires = "never set (refused)" if r.expires is None else when(r.expires) + (" (expired)" if r.expires <= now
                                                                                      else "")
        table.append((r.id, r.user, when(r.created), expires, when(r.last_used) if r.last_used else "never"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_token_revoke(args) -> int:
    from coretriage.store import NotFound

    _, store = _context(args)
    try:
        gone = store.revoke_token(args.id)
    except NotFound as exc:
        raise UserError(str(exc)) from None
    print(f"token {gone.id} of {gone.user} revoked")
    return 0


def cmd_db_upgrade(args) -> int:
    """Bring the database's schema to this coretriage's (Alembic ``upgrade
    head``); ``db current`` only reports it. Neither opens a Store, whose
    opening refuses a shared database that is behind."""
    from coretriage import migrations
    from coretriage.config import load_config
    from coretriage.datadir import open_data_dir

    config = load_config(args.data_dir)
    open_data_dir(config)
    if args.db_command == "current":
        found = migrations.current(config.database_url)
        state = "up to date" if found == migrations.HEAD else f"this coretriage needs {migrations.HEAD}"
        print(f"{found or 'empty'} ({state})")
        return 0
    before, after = migrations.upgrade(config.database_url)
    print(f"already at {after}" if before == after else f"upgraded from {before or 'empty'} to {after}")
    return 0


def cmd_notify(args) -> int:
    """Alert channels: ``notify add|list|remove|test`` (coretriage.alerts, coretriage.notify)."""
    from coretriage.alerts import make_channel

    config, store = _context(args)
    if args.notify_command == "add":
        try:
            channel = make_channel(args.name, webhook=args.webhook, email=args.email, secret=args.secret,
                                   events=args.events, executable=args.executable, host=args.host,
                                   image=args.image, quiet=args.quiet, digest=args.digest)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        new = store.add_channel(channel)
        print(f"channel {args.name} {'added' if new else 'replaced'}: {channel.kind} {channel.target}")
        return 0
    if args.notify_command == "list":
        rows = store.channels()
        if args.json:
            print(json.dumps([{"name": c.name, "kind": c.kind, "target": c.target, "signed": bool(c.secret),
                               "events": list(c.events), "executable": c.executable, "host": c.host,
                               "image": c.image, "quiet": c.quiet, "digest": c.digest} for c in rows], indent=2))
            return 0
        for c in rows:
            filters = " ".join(f"{k}={v}" for k, v in (("executable", c.executable), ("host", c.host),
                                                        ("image", c.image), ("quiet", c.quiet),
                                                        ("digest", c.digest)) if v)
            print(f"{c.name}  {c.kind}  {c.target}  {','.join(c.events)}" + ("  signed" if c.secret else "")
                  + (f"  {filters}" if filters else ""))
        return 0
    if args.notify_command == "remove":
        if not store.remove_channel(args.name):
            raise UserError(f"no channel {args.name}")
        print(f"channel {args.name} removed")
        return 0
    from coretriage.notify import send_test

    found = [c for c in store.channels() if c.name == args.name]
    if not found:
        raise UserError(f"no channel {args.name}")
    send_test(config, found[0])  # a DeliveryError is the one-line error
    print(f"test alert sent to {args.name}")
    return 0


# ---- hosts that upload here (coretriage.hosts) --------------------------------

def cmd_host_add(args) -> int:
    from coretriage.hosts import check_name, new_host_token
    from coretriage.users import token_hash

    _, store = _context(args)
    name = check_name(args.name)
    token = new_host_token()
    store.add_host(name, token_hash(token))
    print(f"host {name} registered; on it, put in DATA/coretriage.toml: server_url = \"<this server's URL>\" "
          "and server_token = the token below (shown once; only its hash is kept)")
    print(token)
    return 0


def cmd_host_list(args) -> int:
    import json

    from coretriage.hosts import format_hosts

    _, store = _context(args)
    rows = store.hosts()
    print(json.dumps([r.to_json() for r in rows], indent=1) if args.json else format_hosts(rows))
    return 0


def cmd_host_revoke(args) -> int:
    _, store = _context(args)
    if not store.revoke_host(args.name):
        raise UserError(f"no host {args.name} (or it is revoked already); see coretriage host list")
    print(f"host {args.name} revoked: its token is refused from now on")
    return 0


def cmd_symbols(args) -> int:
    """The local symbol store: ``symbols add|list|remove`` (coretriage.symboladd)."""
    from coretriage.symbols import SymbolError, store_of

    config, store = _context(args)
    if args.symbols_command == "add":
        from coretriage.symboladd import add

        try:
            done = add(config, store, [Path(p) for p in args.paths], any_build=args.any)
        except SymbolError as exc:
            raise UserError(str(exc)) from None
        print(f"stored {done['stored']} files for {len(done['build_ids'])} build-ids; re-analyzed "
              f"{done['crashes']} crashes, {done['renamed']} groups renamed, {done['merged']} merged")
        return 0
    symbols = store_of(config)
    if args.symbols_command == "list":
        from coretriage.reports import when

        rows = symbols.entries()
        if args.json:
            print(json.dumps([{"build_id": e.build_id, "kind": e.kind, "size": e.size, "origin": e.origin,
                               "name": e.name, "added": e.added} for e in rows], indent=2))
            return 0
        for e in rows:
            print(f"{e.build_id}  {e.kind:<10} {e.size:>10}  {e.origin:<10} {when(e.added)}  {e.name}")
        if not rows:
            print("no symbols stored")
        return 0
    try:
        gone = symbols.remove(args.build_id.strip().lower())
    except SymbolError as exc:
        raise UserError(str(exc)) from None
    if not gone:
        raise UserError(f"no symbols stored for build-id {args.build_id}")
    print(f"removed {', '.join(e.kind for e in gone)} of {args.build_id}")
    return 0
