"""The spool: one directory per crash, written by the pipe handler, read by the daemon.

Layout::

    SPOOL/                      0700 root, never a symlink
      .ratelimit.json           crash-storm counters (collector.ratelimit)
      <id>/                     0700; <id> = <crash time>-<pid>-<8 hex>, see bundle.bundle_id;
                                flock'ed by its writer until meta.json is written
        core.zst                0600, zstd; absent when the core was dropped
        meta.json               0600, written last and atomically: the bundle is finished
        done                    marker: handed to the analysis (mark_done)
        evicted                 marker: the core went to make room (collector.retention)
        root/                   the process's own files (collector.sysroot)

The names are ``collector.bundle.Bundle``'s.

Writing side (the handler) works on directory file descriptors only:
every file is created with ``O_EXCL | O_NOFOLLOW`` relative to its
directory, so nothing a crashed process controls can redirect a write. The
writer holds an exclusive ``flock`` on the bundle directory from its
creation until it closes the directory fd (after ``meta.json``); eviction
(``collector.retention``) takes a bundle's core only under that lock
(``try_lock``), so it never takes one still being written, while a handler
that died mid-write leaves no lock behind.
Reading side (``finished_bundles``, ``read_meta``, ``mark_done``) is for
the collector daemon; it never imports the analyzer.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from analyzer.errors import CoretriageError
from collector.bundle import Bundle, BundleMeta, bundle_id, is_bundle_id

DIR_MODE = 0o700
FILE_MODE = 0o600
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SpoolError(CoretriageError):
    pass


def open_spool(path: str | os.PathLike, create: bool = True) -> int:
    """A directory fd on the spool. Refuses a symlink, a spool owned by
    someone else, or one that others can write to."""
    path = os.fspath(path)
    if create:
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"{parent}: {exc.strerror}") from None
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass
    try:
        fd = os.open(path, _DIR)
    except OSError as exc:
        if os.path.islink(path):
            raise SpoolError(f"{path}: is a symlink, refused") from None
        raise SpoolError(f"{path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise SpoolError(f"{path}: owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}, "
                         "refused (must be ours and not group- or world-writable)")
    return fd


def create_bundle(spool_fd: int, bundle_id: str) -> int:
    """Make ``SPOOL/<bundle_id>/`` (0700, must not exist) and return its fd,
    locked (``flock``) until the caller closes it."""
    if not is_bundle_id(bundle_id):
        raise SpoolError(f"not a bundle id: {bundle_id!r}")
    os.mkdir(bundle_id, DIR_MODE, dir_fd=spool_fd)
    fd = os.open(bundle_id, _DIR, dir_fd=spool_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # before any core.zst: eviction never sees one unlocked
        os.fchmod(fd, DIR_MODE)  # whatever the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


def try_lock(dir_fd: int) -> bool:
    """Lock a bundle directory for eviction; False while its writer holds it.
    The lock goes with ``dir_fd``."""
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def new_bundle(spool_fd: int, crash_time: int, pid: int) -> tuple[str, int]:
    """(id, fd) of a fresh bundle directory; a few tries in case ids collide."""
    for _ in range(5):
        bid = bundle_id(crash_time, pid, os.urandom(4).hex())
        try:
            return bid, create_bundle(spool_fd, bid)
        except FileExistsError:
            continue
    raise SpoolError("could not create a bundle directory")


def free_space(fd: int) -> int:
    """Bytes an unprivileged writer may still use on ``fd``'s filesystem."""
    st = os.fstatvfs(fd)
    return st.f_bavail * st.f_frsize


def create_file(dir_fd: int, name: str) -> int:
    """A new file, 0600, that must not exist (no symlink followed)."""
    if "/" in name or name in ("", ".", ".."):
        raise SpoolError(f"not a plain file name: {name!r}")
    fd = os.open(name, _CREATE, FILE_MODE, dir_fd=dir_fd)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_all(fd: int, data) -> None:
    """os.write until every byte is written (a write may take fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(dir_fd: int, name: str, data: bytes) -> None:
    """Write ``name`` in ``dir_fd``: temp file (O_EXCL|O_NOFOLLOW), fsync, rename, fsync dir."""
    tmp = f".{name}.tmp-{os.urandom(4).hex()}"
    fd = create_file(dir_fd, tmp)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def write_meta(bundle_fd: int, meta: BundleMeta) -> None:
    write_atomic(bundle_fd, Bundle.META, meta.to_json().encode("ascii"))


# ---- reading side: the collector daemon ----

def _is_finished(entry: os.DirEntry) -> bool:
    if not is_bundle_id(entry.name) or not entry.is_dir(follow_symlinks=False):
        return False
    return Bundle(entry.path).is_finished()


def finished_bundles(spool_dir: str | os.PathLike, include_done: bool = False) -> Iterator[Path]:
    """Bundle directories with a ``meta.json``, oldest id first; those already
    handed over (``mark_done``) only with ``include_done``. Symlinks, stray
    files and half-written bundles are skipped."""
    try:
        entries = sorted((e for e in os.scandir(spool_dir) if _is_finished(e)), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if include_done or not Bundle(entry.path).is_done():
            yield Path(entry.path)


def unfinished_bundles(spool_dir: str | os.PathLike) -> Iterator[Path]:
    """Bundle directories without ``meta.json``: a handler still writing, or
    one that died (the daemon may remove those that are old)."""
    try:
        entries = sorted(os.scandir(spool_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if is_bundle_id(entry.name) and entry.is_dir(follow_symlinks=False) and not _is_finished(entry):
            yield Path(entry.path)


def read_meta(bundle_dir: str | os.PathLike) -> BundleMeta:
    bundle = Bundle(bundle_dir)
    fd = os.open(bundle.meta, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        data = f.read(64 << 20)
    meta = BundleMeta.from_json(data)
    if meta.id != bundle.id:
        raise ValueError(f"{bundle_dir}: meta.json belongs to bundle {meta.id}")
    return meta


def is_done(bundle_dir: str | os.PathLike) -> bool:
    return Bundle(bundle_dir).is_done()


def mark_done(bundle_dir: str | os.PathLike) -> None:
    """Record that the bundle was handed to the analysis. Idempotent."""
    dir_fd = os.open(os.fspath(bundle_dir), _DIR)
    try:
        try:
            os.close(create_file(dir_fd, Bundle.DONE))
        except FileExistsError:
            return
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
