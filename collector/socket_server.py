"""Cores over a socket (Linux 6.16+): ``core_pattern = @/path/coretriage.sock``.

Instead of starting a handler per crash, the kernel connects to this
listening AF_UNIX socket and writes the core. The peer's credentials name
the crashed process, and ``SO_PEERPIDFD`` gives a pidfd for it that guards
``/proc/<pid>`` against pid reuse, as ``%F`` does in pipe mode. Each
connection then goes through the very same steps as the pipe handler
(``collector.capture``): same bundle, same policy, same guarantees.

``handle`` owns the connection: it stays a socket object for the whole
capture (the steps read its fd and release it, ``/dev/null`` taking its
place) and is closed at the end, as is the peer's pidfd; a daemon that runs
for months must not keep one fd per crash. The signal is not passed in this
mode; the analysis reads it from the core's notes.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
import threading
import time

from collector.capture import Args, capture
from collector.logline import log

SO_PEERPIDFD = 77  # <asm-generic/socket.h>, Linux 6.5+
SOCKET_NAME = "coretriage.sock"
logger = logging.getLogger("coretriage.collector")


def kernel_supports_socket(proc: str = "/proc") -> bool:
    """Linux 6.16 added '@' patterns; try nothing, read the version."""
    release = os.uname().release.split("-")[0].split(".")
    try:
        major, minor = int(release[0]), int(release[1])
    except (ValueError, IndexError):
        return False
    return (major, minor) >= (6, 16)


def listen(path: str) -> socket.socket:
    """A root-only listening socket at ``path`` (a stale one is replaced)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{path} exists and is not a socket")
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o077)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def _peer_pidfd(conn: socket.socket) -> int | None:
    try:
        return conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:
        return None  # older kernel: capture falls back to pidfd_open and start times


def handle(conn: socket.socket, data_dir: str) -> None:
    """One crash: who it is, then ``capture`` reading the connection. Closes ``conn``."""
    host_time, started = time.time(), time.monotonic()
    pidfd = None
    try:
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        pidfd = _peer_pidfd(conn)
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm = f.read().rstrip(b"\n").decode("utf-8", "backslashreplace")
        except OSError:
            comm = ""
        args = Args(pid=pid, signal=0, crash_time=int(host_time), uid=uid, gid=gid, pidfd=pidfd, comm=comm,
                    data_dir=data_dir)
        priority, line = capture(args, host_time, started, stdin=conn.fileno())
    finally:
        conn.close()
        if pidfd is not None:
            os.close(pidfd)
    log(priority, line)
    logger.info("%s", line)


def serve(path: str, data_dir: str, stop: threading.Event) -> None:
    """Accept crashes until ``stop``; each on its own thread, so a big core
    does not hold up the next crash."""
    server = listen(path)
    server.settimeout(0.5)
    try:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)

            def run(c=conn):
                try:
                    handle(c, data_dir)
                except Exception as exc:  # never take the server down
                    logger.error("socket crash capture failed: %s: %s", type(exc).__name__, exc)

            threading.Thread(target=run, daemon=True).start()
    finally:
        server.close()
        try:
            os.unlink(path)
        except OSError:
            pass
