"""Keep the crashed process's own executable and libraries with its bundle.

A container's files are gone, or different, by the time the core is
analyzed; the analysis needs the very builds that crashed. Each mapped file
is opened with openat2(RESOLVE_IN_ROOT) under ``/proc/PID/root``, so every
path (and every symlink planted in an image) resolves inside the process's
own root and never reaches a host file, and is taken only if its device and
inode are the ones the process mapped. (``/proc/PID/map_files`` would be
simpler, but the kernel refuses it while the process is dumping.)

Files are stored by content: ``DATA/files/sha256/<hex>``, the hash computed
from the bytes read through the process's own fd, and hard-linked into
``BUNDLE/root/<path>``, the sysroot the analyzer is given: a thousand
crashes of one image store one libc, and each bundle links exactly the files
its own process mapped. ``BUNDLE/files.json`` lists path -> sha256 with the
build-id each file claims. A build-id is an index, never an identity: anyone
can link a library with another build's id (``-Wl,--build-id=0x...``), so
two tenants' files with one build-id are two files here.

The old layout, ``DATA/files/<build-id>/<name>``, may still hold files that
old bundles link to; nothing new is written there.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time

from dataclasses import dataclass

from analyzer.elfid import build_id, fd_reader
from collector.bundle import Bundle, display

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 32


SYS_OPENAT2 = 437  # the same number on every architecture
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


SHA256_DIR = b"sha256"  # DATA/files/sha256/<hex>: the content store
MANIFEST = Bundle.FILES
CHUNK = 1 << 20
OVERLAYFS_MAGIC = 0x794C7630


def mapped_files(maps: bytes) -> list[tuple[int, int, bytes]]:
    """(device, inode, path) of every file mapped from its start, each once.
    The device is the maps line's major:minor as an ``st_dev`` value."""
    out, seen = [], set()
    for line in maps.split(b"\n"):
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith(b"/") or int(parts[2], 16) != 0:
            continue
        if parts[5].endswith(b" (deleted)"):
            continue  # replaced on disk since: what is there now is not what crashed
        if parts[5] in seen:
            continue
        major, _, minor = parts[3].partition(b":")
        try:
            dev = os.makedev(int(major, 16), int(minor, 16))
        except ValueError:
            continue
        seen.add(parts[5])
        out.append((dev, int(parts[4]), parts[5]))
    return out


def openat2_in_root(dir_fd: int, path: bytes, flags: int = os.O_RDONLY | os.O_NOFOLLOW) -> int:
    """openat2 of ``path`` with ``dir_fd`` as the root: symlinks and ".."
    resolve inside it (RESOLVE_IN_ROOT), never through /proc magic links."""
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    how = OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
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


def hash_fd(src_fd: int, limit: int, out: int | None = None) -> str:
    """The sha256 of up to ``limit`` bytes of ``src_fd``, read by position;
    with ``out``, exactly those bytes are written there too."""
    from collector.spool import write_all

    digest = hashlib.sha256()
    pos = 0
    while pos < limit:
        chunk = os.pread(src_fd, min(CHUNK, limit - pos), pos)
        if not chunk:
            break
        digest.update(chunk)
        if out is not None:
            write_all(out, chunk)
        pos += len(chunk)
    return digest.hexdigest()


def store_content(src_fd: int, files_fd: int, limit: int) -> tuple[int, str]:
    """(fd of ``DATA/files/sha256``, hex) of the stored copy of ``src_fd``'s
    content, copying it in when no file with that content is there yet."""
    sha_fd = _open_dir(files_fd, SHA256_DIR, create=True)
    try:
        digest = hash_fd(src_fd, limit)
        try:
            # in use again: retention ages a stored file by its last use
            os.utime(digest, dir_fd=sha_fd, follow_symlinks=False)
            return sha_fd, digest
        except FileNotFoundError:
            pass
        tmp = ".tmp-" + os.urandom(4).hex()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=sha_fd)
        try:
            # hashed again while copying: the name is the hash of the bytes
            # stored, whatever the file did between the two reads
            digest = hash_fd(src_fd, limit, out)
            os.fsync(out)
            os.close(out)
            out = -1
            try:
                os.link(tmp, digest, src_dir_fd=sha_fd, dst_dir_fd=sha_fd, follow_symlinks=False)
            except FileExistsError:
                pass  # another handler stored the same content meanwhile
        finally:
            if out >= 0:
                os.close(out)
            os.unlink(tmp, dir_fd=sha_fd)
        return sha_fd, digest
    except BaseException:
        os.close(sha_fd)
        raise


def _mapped_identity(src_fd: int) -> tuple[int, int] | None:
    """(device, inode) the kernel shows in a maps line for a mapping of
    ``src_fd``: map its first page here and read our own maps. On overlayfs
    (a container's root) a mapping is of the layer's real file, whose device
    differs from what fstat of the overlay file reports."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    addr = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE, src_fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return None
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read()
    finally:
        libc.munmap(addr, mmap.PAGESIZE)
    prefix = f"{addr:x}-".encode()
    for line in maps.split(b"\n"):
        if line.startswith(prefix):
            parts = line.split(maxsplit=5)
            major, _, minor = parts[3].partition(b":")
            return os.makedev(int(major, 16), int(minor, 16)), int(parts[4])
    return None


def is_mapped_file(src_fd: int, st: os.stat_result, dev: int, inode: int) -> bool:
    """Whether the open file is the one a maps line named by (dev, inode)."""
    if (st.st_dev, st.st_ino) == (dev, inode):
        return True
    return _mapped_identity(src_fd) == (dev, inode)


@dataclass(frozen=True)
class Kept:
    """One file linked into ``BUNDLE/root``."""

    path: str  # as the process mapped it (display form)
    sha256: str
    build_id: str  # what the file claims: an index, not an identity
    size: int


def capture_files(proc_fd: int, maps: bytes, bundle_fd: int, files_fd: int, problems: list[str],
                  max_file_size: int = 1 << 30, budget: float = 20.0) -> list[Kept]:
    """Link every mapped ELF file of the process into ``BUNDLE/root``.
    Returns what was kept; what failed goes to ``problems``."""
    deadline = time.monotonic() + budget
    kept: list[Kept] = []
    proc_root = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
    root_fd = _open_dir(bundle_fd, Bundle.ROOT.encode(), create=True)
    try:
        for dev, inode, path in mapped_files(maps):
            if time.monotonic() > deadline:
                problems.append(f"mapped files: stopped after {budget:g} s, {len(kept)} kept")
                break
            parts = safe_components(path)
            if parts is None:
                problems.append(f"mapped file with an unusable path skipped: {path[:200]!r}")
                continue
            try:
                one = _capture_one(proc_root, dev, inode, path, parts, root_fd, files_fd, max_file_size,
                                   problems)
            except OSError as exc:
                problems.append(f"mapped file {path[:200]!r}: {exc.strerror}")
                continue
            if one is not None:
                kept.append(one)
    finally:
        os.close(root_fd)
        os.close(proc_root)
    return kept


def _capture_one(proc_root, dev, inode, path, parts, root_fd, files_fd, max_file_size, problems) -> Kept | None:
    src = openat2_in_root(proc_root, path.lstrip(b"/"))
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode) or not is_mapped_file(src, st, dev, inode):
            problems.append(f"mapped file {path[:200]!r} changed on disk since it was mapped: not kept")
            return None
        if st.st_size > max_file_size:
            return None
        bid = build_id(fd_reader(src))
        if bid is None:
            return None  # not an ELF image with a build-id: data files, fonts, caches
        sha_fd, digest = store_content(src, files_fd, max_file_size)
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
                os.link(digest, parts[-1], src_dir_fd=sha_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                pass
            size = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_size
        finally:
            os.close(dir_fd)
    finally:
        os.close(sha_fd)
    return Kept(path=display(path), sha256=digest, build_id=bid, size=size)


def manifest_json(kept: list[Kept]) -> bytes:
    """``files.json``: what ``root/`` links, so the store can keep a crash's
    files by content once its bundle is gone."""
    return json.dumps({"schema": 1, "files": [
        {"path": k.path, "sha256": k.sha256, "build_id": k.build_id, "size": k.size} for k in kept]},
        indent=1, ensure_ascii=True).encode("ascii") + b"\n"


def _write_manifest(bundle_fd: int, data: bytes) -> None:
    # no rename needed: the bundle is not finished until meta.json, which is
    # written after it and fsyncs the directory
    from collector.spool import create_file, write_all

    fd = create_file(bundle_fd, MANIFEST)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(bundle_dir) -> dict[str, str] | None:
    """path -> sha256 from a bundle's ``files.json``; None when the bundle
    has none (written before content hashes, or its files were not kept),
    or no ``root/`` any more (its core was dropped or evicted after the
    files were taken: the list names nothing the bundle holds)."""
    if not os.path.isdir(os.path.join(os.fspath(bundle_dir), Bundle.ROOT)):
        return None
    try:
        fd = os.open(os.path.join(os.fspath(bundle_dir), MANIFEST), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as f:
        data = json.loads(f.read(16 << 20))
    out = {}
    for entry in data.get("files", []) if isinstance(data, dict) else []:
        if isinstance(entry, dict) and is_sha256(entry.get("sha256")) and isinstance(entry.get("path"), str):
            out[entry["path"]] = entry["sha256"]
    return out


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


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
        kept = capture_files(proc_fd, maps, bundle_fd, files_fd, problems, max_file_size)
        _write_manifest(bundle_fd, manifest_json(kept))
    except OSError as exc:
        problems.append(f"mapped files: {exc.strerror}")
    finally:
        os.close(files_fd)
