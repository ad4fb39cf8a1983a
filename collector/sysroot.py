"""Keep the crashed process's own executable and libraries with its bundle.

A container's files are gone, or different, by the time the core is
analyzed; the analysis needs the very builds that crashed. Each mapped file
is opened with openat2(RESOLVE_IN_ROOT) under ``/proc/PID/root``, so every
path (and every symlink planted in an image) resolves inside the process's
own root and never reaches a host file, and is taken only if its inode is
the one the process mapped. (``/proc/PID/map_files`` would be simpler, but
the kernel refuses it while the process is dumping.) Files are stored once
per build-id under ``DATA/files/<build-id>/`` and hard-linked into
``BUNDLE/root/<path>``, the sysroot the analyzer is given: a thousand
crashes of one image store one libc.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from analyzer.elfid import build_id, fd_reader
from collector.bundle import Bundle

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 32


SYS_OPENAT2 = 437  # the same number on every architecture
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def mapped_files(maps: bytes) -> list[tuple[int, bytes]]:
    """(inode, path) of every file mapped from its start, each once."""
    out, seen = [], set()
    for line in maps.split(b"\n"):
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith(b"/") or int(parts[2], 16) != 0:
            continue
        if parts[5].endswith(b" (deleted)"):
            continue  # replaced on disk since: what is there now is not what crashed
        if parts[5] in seen:
            continue
        seen.add(parts[5])
        out.append((int(parts[4]), parts[5]))
    return out


def _openat2(dir_fd: int, path: bytes) -> int:
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    how = OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(path),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def safe_components(path: bytes) -> list[bytes] | None:
    """The components of an absolute path, or None if any could escape."""
    parts = path.split(b"/")[1:]
    if not path.startswith(b"/") or not parts or len(parts) > MAX_DEPTH:
        return None
    for p in parts:
        if p in (b"", b".", b"..") or b"\0" in p or len(p) > 255:
            return None
    return parts


def _open_dir(parent_fd: int, name: bytes, create: bool) -> int:
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


# copy_file_range refuses files on another superblock with EXDEV (Linux 5.19+):
# a container's overlayfs root is never the data dir's filesystem
_NO_COPY_FILE_RANGE = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _copy(src_fd: int, out: int, size: int) -> int:
    """Copy ``size`` bytes from the start of ``src_fd`` into ``out``: in the
    kernel with copy_file_range, else sendfile. Returns the bytes copied."""
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(src_fd, out, size - copied, copied, copied)
        except OSError as exc:
            if exc.errno not in _NO_COPY_FILE_RANGE:
                raise
            break
        if n == 0:
            return copied
        copied += n
    os.lseek(out, copied, os.SEEK_SET)
    while copied < size:
        n = os.sendfile(out, src_fd, copied, size - copied)
        if n == 0:
            break
        copied += n
    return copied


def _store(src_fd: int, files_fd: int, key: str, name: bytes, size: int) -> tuple[int, bytes]:
    """(dir fd, name) of the stored copy, copying it in if it is new."""
    key_fd = _open_dir(files_fd, key.encode(), create=True)
    try:
        os.stat(name, dir_fd=key_fd, follow_symlinks=False)
        return key_fd, name
    except FileNotFoundError:
        pass
    tmp = b".tmp-" + os.urandom(4).hex().encode()
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                  dir_fd=key_fd)
    try:
        _copy(src_fd, out, size)
        os.fsync(out)
    except BaseException:
        os.close(out)
        os.unlink(tmp, dir_fd=key_fd)
        os.close(key_fd)
        raise
    os.close(out)
    os.rename(tmp, name, src_dir_fd=key_fd, dst_dir_fd=key_fd)
    return key_fd, name


def capture_files(proc_fd: int, maps: bytes, bundle_fd: int, files_fd: int, problems: list[str],
                  max_file_size: int = 1 << 30, budget: float = 20.0) -> int:
    """Link every mapped ELF file of the process into ``BUNDLE/root``.
    Returns how many were kept; what failed goes to ``problems``."""
    deadline = time.monotonic() + budget
    kept = 0
    proc_root = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
    root_fd = _open_dir(bundle_fd, Bundle.ROOT.encode(), create=True)
    try:
        for inode, path in mapped_files(maps):
            if time.monotonic() > deadline:
                problems.append(f"mapped files: stopped after {budget:g} s, {kept} kept")
                break
            parts = safe_components(path)
            if parts is None:
                problems.append(f"mapped file with an unusable path skipped: {path[:200]!r}")
                continue
            try:
                kept += _capture_one(proc_root, inode, path, parts, root_fd, files_fd, max_file_size, problems)
            except OSError as exc:
                problems.append(f"mapped file {path[:200]!r}: {exc.strerror}")
    finally:
        os.close(root_fd)
        os.close(proc_root)
    return kept


def _capture_one(proc_root, inode, path, parts, root_fd, files_fd, max_file_size, problems) -> int:
    src = _openat2(proc_root, path.lstrip(b"/"))
    try:
        st = os.fstat(src)
        if st.st_ino != inode:
            problems.append(f"mapped file {path[:200]!r} changed on disk since it was mapped: not kept")
            return 0
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_file_size:
            return 0
        bid = build_id(fd_reader(src))
        if bid is None:
            return 0  # not an ELF image with a build-id: data files, fonts, caches
        key_fd, name = _store(src, files_fd, bid, parts[-1], st.st_size)
    finally:
        os.close(src)
    try:
        dir_fd = os.dup(root_fd)
        try:
            for part in parts[:-1]:
                nxt = _open_dir(dir_fd, part, create=True)
                os.close(dir_fd)
                dir_fd = nxt
            try:
                os.link(name, parts[-1], src_dir_fd=key_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                pass
        finally:
            os.close(dir_fd)
    finally:
        os.close(key_fd)
    return 1


def keep_files(proc_fd: int, maps: bytes, bundle_fd: int, data_dir: str, max_file_size: int,
               problems: list[str]) -> None:
    """The capture step: the process's own executable and libraries, while
    the kernel still holds it (blocked writing the core into our pipe)."""
    from collector.spool import SpoolError, open_spool

    try:
        files_fd = open_spool(os.path.join(data_dir, "files"))  # same checks as the spool
    except (SpoolError, OSError) as exc:
        problems.append(f"mapped files not kept: {exc}")
        return
    try:
        capture_files(proc_fd, maps, bundle_fd, files_fd, problems, max_file_size)
    except OSError as exc:
        problems.append(f"mapped files: {exc.strerror}")
    finally:
        os.close(files_fd)
