"""Crashes the kernel skipped: it writes no core, runs no handler and tells
only its own log ("over core_pipe_limit, skipping core dump") when more
crashes dump at once than ``kernel.core_pipe_limit`` allows. Nothing else
would ever show that they happened, so ``doctor`` counts them here, over
the last day (the log outlives a fix of the limit).

``count_skipped`` is pure; ``skipped_dumps`` reads the log (root only)."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

KMSG = Path("/dev/kmsg")
SKIPPED = "over core_pipe_limit"  # 6.x "coredump: PID(comm): over ...", older "Pid PID(comm) over ..."
WINDOW = 24 * 3600.0  # seconds back: a skip older than that says little once the limit was raised
MAX_RECORDS = 100_000  # the ring buffer holds far fewer; a bound in case a writer keeps it busy
# "prio,seq,usec,flags;text" from /dev/kmsg, or "[secs.frac] text" from dmesg
_RECORD = re.compile(r"(?:\d+,\d+,(\d+),[^;]*;|\[\s*(\d+)\.(\d{1,6})\]\s?)?(.*)", re.S)


def count_skipped(records, since_usec: int = 0) -> int:
    """How many kernel log records from ``since_usec`` (microseconds since
    boot) on say a crash was skipped. The process name inside is the crashed
    program's own, so only the kernel's fixed words count, after the last
    ``)`` of its ``PID(comm)``; a record without a time counts."""
    n = 0
    for record in records:
        usec, secs, frac, text = _RECORD.match(record).groups()
        at = int(usec) if usec else int(secs) * 1_000_000 + int(frac.ljust(6, "0")) if secs else None
        if (at is None or at >= since_usec) and text.rpartition(")")[2].lstrip(": ").startswith(SKIPPED):
            n += 1
    return n


def skipped_dumps(path: Path = KMSG, within: float = WINDOW, uptime: Path = Path("/proc/uptime")) -> int | None:
    """Crashes skipped over core_pipe_limit in the last ``within`` seconds,
    as far as the kernel's log goes; None when it cannot be read (not root,
    no /dev/kmsg, a sandbox hiding it)."""
    try:
        since = max(0, int((float(uptime.read_text().split()[0]) - within) * 1_000_000))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError, IndexError):
        return None
    records = []
    try:
        for _ in range(MAX_RECORDS):
            try:
                chunk = os.read(fd, 8192)  # /dev/kmsg: one record per read
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we read: go on with the next
                    continue
                if exc.errno == errno.EAGAIN:  # the end of the log
                    break
                return None
            if not chunk:
                break
            records.extend(chunk.decode("utf-8", "replace").splitlines())
    finally:
        os.close(fd)
    return count_skipped((r for r in records if not r.startswith(" ")), since)  # " KEY=value": a record's dict
