"""Swap a dump-directory entry at the one moment the collector is slow.

The collector daemon (collector/watch.py) lists a dump directory, waits for
a file's size to settle, then scans every /proc/*/fd for a process that
still has it open (``writers_of``) before it takes the file. That scan takes
long on a busy host, and it is the window a user who can write to the dump
directory has to swap the name for something else. ``take_with_swap`` runs
the real Collector's own scans in a child process and makes the swap from
inside that step: the race happens on every run, not by luck, and a child
that hangs (a FIFO, /dev/zero) is killed instead of hanging the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DRIVER = r"""
import logging, os, stat, sys
from pathlib import Path

import collector.watch as watch

dump, spool_dir, how, target = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
scan_proc = watch.writers_of


def swap_while_scanning(path, *args, **kwargs):
    busy = scan_proc(path, *args, **kwargs)  # the real /proc scan; the swap lands in its window
    if how != "none":
        os.unlink(path)
        if how == "fifo":
            os.mkfifo(path, 0o600)
        elif how == "dev-zero-node":
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        elif how == "symlink":
            os.symlink(target, path)
        elif how == "hardlink":
            os.link(target, path)
        else:
            raise SystemExit(f"unknown swap {how}")
    return busy


watch.writers_of = swap_while_scanning
taken = []
collector = watch.Collector(spool_dir, taken.append, (dump,), stable=0.0)
collector.scan()  # sees the file and its size
collector.scan()  # size unchanged: checks for writers (the swap), then takes it
collector.drain(timeout=0.01)
print(len(taken))
"""


@dataclass(frozen=True)
class Outcome:
    hung: bool
    returncode: int | None
    taken: int  # bundles the collector offered
    log: list[str]  # the collector's log lines
    bundles: list[Path]  # what is in the spool afterwards


def take_with_swap(dump: Path, spool_dir: Path, how: str, target: str = "", timeout: float = 20.0) -> Outcome:
    """Let the real Collector find ``dump``'s file and, while it checks for
    writers, swap it: ``how`` is none, fifo, dev-zero-node, symlink or
    hardlink (to ``target``)."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(dump), str(spool_dir), how, target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        out, err = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        hung = True
    taken = int(out.split()[-1]) if out.strip() and not hung else 0
    bundles = sorted(p for p in spool_dir.iterdir() if p.is_dir()) if spool_dir.is_dir() else []
    return Outcome(hung=hung, returncode=None if hung else proc.returncode, taken=taken,
                   log=[l for l in err.splitlines() if l.strip()], bundles=bundles)


def plant_core(dump: Path, name: str = "core.1234", size: int = 1 << 16) -> Path:
    """A finished core file, owned by an ordinary user as the kernel would leave it."""
    path = dump / name
    path.write_bytes(b"\x7fELF" + os.urandom(size - 4))
    os.chown(path, 65534, 65534)
    return path
