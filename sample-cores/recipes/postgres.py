"""A real PostgreSQL 15 backend killed by SIGSEGV inside a buggy C extension.

A throwaway cluster is created in ``workdir`` (initdb as the ``postgres`` OS
user, unix socket only, no TCP), ``normalize_sku(text)`` from
``src/pg_buggy.c`` is created as a C function, and a query that feeds it an
empty string crashes the backend. The kernel writes the backend's core into
``workdir/cores``; the server is always stopped before returning.

The backend runs as ``postgres``, so it must be able to reach ``workdir``: the
extension is loaded from ``workdir/pg_buggy.so`` (the path stays in the core's
link map, so it has to outlive the cluster) and the core is written to
``workdir/cores``. Directories on the way to ``workdir`` that ``postgres``
cannot search get the search bit for others (``o+x``, never read or write);
they are listed in ``extra["opened_dirs"]``. The socket lives in a short
private directory under /tmp (unix socket paths are limited to 107 bytes) that
is removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import crashkit

PG_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES = PG_BIN / "postgres"
OS_USER = "postgres"
PORT = 5432  # unix socket only, in a private directory: cannot collide
FUNCTION = "normalize_sku"
# The statement whose text ends up in the backend's debug_query_string. psql
# sends it with the trailing semicolon.
QUERY = ("SELECT normalize_sku(name) FROM (VALUES ('widget-42'), ('')) AS t(name) "
         "WHERE name <> 'secret-literal';")
CONF = """
# coretriage sample-cores/recipes/postgres.py
listen_addresses = ''
unix_socket_directories = '{sock}'
port = {port}
shared_buffers = 16MB
max_connections = 10
huge_pages = off
restart_after_crash = off
fsync = off
logging_collector = off
"""
ENV = {"PATH": f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}


def _run(argv: list, what: str, *, timeout: float, cwd: Path, check: bool = True,
         as_postgres: bool = False) -> subprocess.CompletedProcess:
    kw = _as_postgres() if as_postgres else {"env": ENV}
    try:
        proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"postgres recipe: {what} did not finish in {timeout:.0f}s") from exc
    except OSError as exc:
        raise RuntimeError(f"postgres recipe: {what} could not run: {exc}") from exc
    if check and proc.returncode != 0:
        raise RuntimeError(f"postgres recipe: {what} failed ({proc.returncode}): "
                           f"{(proc.stdout + proc.stderr)[-1500:]}")
    return proc


def _as_postgres() -> dict:
    """Popen arguments that run a command as the postgres user. Not runuser or
    su: their PAM session (pam_limits) puts the core limit back to init's."""
    user = pwd.getpwnam(OS_USER)
    return {
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": os.getgrouplist(user.pw_name, user.pw_gid),
        "env": {**ENV, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name},
        "preexec_fn": crashkit.allow_cores,
    }


def _open_path_for(user: pwd.struct_passwd, target: Path) -> list[str]:
    """Give ``user`` search permission on every directory down to ``target``."""
    gids = set(os.getgrouplist(user.pw_name, user.pw_gid))
    opened = []
    for d in [*reversed(target.parents), target]:
        st = d.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            opened.append(str(d))
    return opened


def _log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no server log)"


def _core_limit(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max core file size"):
                return line.split()[4]  # the soft limit
    except OSError as exc:
        return f"unreadable: {exc}"
    return "unknown"


def _start(data: Path, log: Path, cwd: Path) -> tuple[subprocess.Popen, int]:
    """Start the postmaster as a child of ours (not through pg_ctl), so that it
    is reaped here and never lingers as a zombie of init; wait until it is ready."""
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen([str(POSTGRES), "-D", str(data)], cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    **_as_postgres())
        except OSError as exc:
            raise RuntimeError(f"postgres recipe: could not start postgres: {exc}") from exc
    deadline = time.monotonic() + 60
    pidfile = data / "postmaster.pid"
    while True:
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            lines = []
        # postmaster.pid: pid, datadir, start time, port, socket dir, listen
        # addresses, shmem key, status ("ready" once it accepts connections).
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return proc, int(lines[0])
        if proc.poll() is not None:
            raise RuntimeError(f"postgres recipe: postgres exited {proc.returncode} while starting"
                               f"\nserver log:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            pm = int(lines[0]) if lines and lines[0].strip().isdigit() else None
            _stop(data, proc, pm, cwd)
            raise RuntimeError(f"postgres recipe: postgres not ready after 60s"
                               f"\nserver log:\n{_log_tail(log)}")
        time.sleep(0.05)


def _stop(data: Path, proc: subprocess.Popen, postmaster_pid: int | None, cwd: Path) -> None:
    """Stop the cluster for sure and reap it; raise if something is left running."""
    if proc.poll() is None:
        # Failure is fine here (it may be exiting already): the wait below decides.
        _run([PG_BIN / "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "30"],
             "pg_ctl stop", timeout=45, cwd=cwd, check=False, as_postgres=True)
    try:
        proc.wait(timeout=15)
        return
    except subprocess.TimeoutExpired:
        pass
    if postmaster_pid is not None:
        try:
            os.kill(postmaster_pid, signal.SIGKILL)  # its children exit on postmaster death
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"postgres recipe: postmaster {postmaster_pid} would not stop") from None


def make(workdir: Path) -> crashkit.Sample:
    crashkit.need("gcc", *(str(PG_BIN / t) for t in
                                      ("pg_config", "initdb", "pg_ctl", "psql", "postgres")))
    try:
        user = pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise RuntimeError("postgres recipe: no 'postgres' OS user (install postgresql)") from exc
    if os.geteuid() != 0:
        raise RuntimeError("postgres recipe: needs root (core_pattern, switching to postgres)")

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    opened = _open_path_for(user, workdir)
    cores_dir = workdir / "cores"
    pg = workdir / "pg"  # owned by postgres: data directory, log, script
    if pg.exists():
        shutil.rmtree(pg)
    pg.mkdir()
    os.chown(pg, user.pw_uid, user.pw_gid)
    data, log, script = pg / "data", pg / "postgres.log", pg / "crash.sql"

    # The extension: root-owned, world-readable, in workdir so gdb finds it later.
    incdir = _run([str(PG_BIN / "pg_config"), "--includedir-server"], "pg_config",
                  timeout=30, cwd=workdir).stdout.strip()
    so = workdir / "pg_buggy.so"
    try:
        crashkit.compile_c("pg_buggy.c", so, flags=("-shared", "-fPIC", f"-I{incdir}"))
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"postgres recipe: building pg_buggy.so failed: "
                           f"{exc.stderr.decode(errors='replace')[-1500:]}") from exc
    os.chmod(so, 0o755)

    _run([PG_BIN / "initdb", "-D", data, "-U", "postgres", "-A", "trust",
          "-E", "UTF8", "--locale=C", "--no-sync"],
         "initdb", timeout=120, cwd=pg, as_postgres=True)

    sql_path = str(so).replace("'", "''")
    script.write_text(
        f"CREATE FUNCTION {FUNCTION}(text) RETURNS text AS '{sql_path}', '{FUNCTION}' "
        "LANGUAGE C STRICT;\n"
        "SELECT pg_backend_pid();\n"
        f"{QUERY}\n")
    os.chmod(script, 0o644)

    sock = Path(tempfile.mkdtemp(prefix="ctpg-", dir="/tmp"))
    server = postmaster_pid = None
    try:
        os.chown(sock, user.pw_uid, user.pw_gid)
        with open(data / "postgresql.conf", "a") as conf:  # stays owned by postgres
            conf.write(CONF.format(sock=sock, port=PORT))
        with crashkit.cores_into(cores_dir):
            server, postmaster_pid = _start(data, log, pg)
            # Backends inherit the postmaster's limit, lifted by allow_cores (it
            # cannot be lifted from outside: prlimit on another user's process
            # needs CAP_SYS_RESOURCE, which root may lack, as on this VM).
            limit = _core_limit(postmaster_pid)
            if limit != "unlimited":
                raise RuntimeError(f"postgres recipe: the postmaster's core limit is {limit!r}, "
                                   "not unlimited (is the hard limit lowered?)")

            proc = _run([PG_BIN / "psql", "-X", "-q", "-A", "-t",
                         "-h", sock, "-p", PORT, "-U", "postgres",
                         "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-f", script],
                        "psql", timeout=60, cwd=pg, check=False, as_postgres=True)
            lines = proc.stdout.split()
            if not lines or not lines[0].isdigit():
                raise RuntimeError(f"postgres recipe: psql printed no backend pid "
                                   f"(exit {proc.returncode}): {(proc.stdout + proc.stderr)[-1500:]}"
                                   f"\nserver log:\n{_log_tail(log)}")
            backend_pid = int(lines[0])
            lost = ("closed the connection unexpectedly" in proc.stderr
                    or "connection to server was lost" in proc.stderr)
            if proc.returncode == 0 or not lost:
                raise RuntimeError(f"postgres recipe: the query did not crash the backend "
                                   f"(psql exit {proc.returncode}): {(proc.stdout + proc.stderr)[-1500:]}"
                                   f"\nserver log:\n{_log_tail(log)}")
            try:
                core = crashkit.wait_for_core(cores_dir, backend_pid, timeout=30)
            except RuntimeError as exc:
                raise RuntimeError(f"postgres recipe: {exc}\nserver log:\n{_log_tail(log)}") from None
    finally:
        try:
            if server is not None:
                _stop(data, server, postmaster_pid, pg)
        finally:
            shutil.rmtree(sock, ignore_errors=True)

    return crashkit.Sample(
        name="postgres",
        core=core,
        exe=POSTGRES,
        expected_signal="SIGSEGV",
        extra={
            "query": QUERY,
            "top_function": FUNCTION,
            "backend_pid": backend_pid,
            "extension": str(so),
            "opened_dirs": opened,
        },
    )
