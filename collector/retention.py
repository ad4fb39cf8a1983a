"""Make room in the spool: the oldest waiting cores go first.

A crash storm, or an analysis that is down, must not fill the disk and stop
the next crash from being captured. Before each new core the handler evicts
the cores of the oldest bundles while the spool holds more than
``max_spool_use`` or the filesystem has less than ``min_free_space``. Only
``core.zst`` goes, and ``root/`` unless the bundle holds a stack core
(``stack.zst``, kept: a few hundred KiB that still give every backtrace):
``meta.json`` stays, with an ``evicted`` marker, so the crash is still
counted and shown. A bundle whose writer still
holds its lock (``collector.spool.try_lock``) is passed over: its core is
being written.
"""

from __future__ import annotations

import os

from collector.bundle import Bundle, is_bundle_id, remove_files
from collector.spool import free_space, try_lock

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _cores(spool_fd: int, keep: str) -> list[tuple[str, int]]:
    """(bundle id, core size) of bundles holding a core, oldest first."""
    out = []
    with os.scandir(spool_fd) as entries:
        for entry in entries:
            if entry.name == keep or not is_bundle_id(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                st = os.stat(f"{entry.name}/{Bundle.CORE}", dir_fd=spool_fd, follow_symlinks=False)
            except OSError:
                continue
            out.append((entry.name, st.st_size))
    return sorted(out)  # ids start with the crash time


def make_room(spool_fd: int, max_use: int, min_free: int, keep: str) -> list[str]:
    """Evict the oldest cores until the limits hold; returns the evicted ids."""
    cores = _cores(spool_fd, keep)
    used = sum(size for _, size in cores)
    evicted = []
    for bid, size in cores:
        if used <= max_use and free_space(spool_fd) >= min_free:
            break
        fd = os.open(bid, DIR_FLAGS, dir_fd=spool_fd)
        try:
            if not try_lock(fd):
                continue  # still being written (the lock goes with fd, closed below)
            os.stat(Bundle.CORE, dir_fd=fd, follow_symlinks=False)  # gone meanwhile: no marker
            marker = os.open(Bundle.EVICTED, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
            os.close(marker)
            os.unlink(Bundle.CORE, dir_fd=fd)
            try:
                os.stat(Bundle.STACK, dir_fd=fd, follow_symlinks=False)  # kept: it still needs the files
            except FileNotFoundError:
                remove_files(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        used -= size
        evicted.append(bid)
    return evicted
