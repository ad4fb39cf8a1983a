"""The central side of an upload: what a host sends, checked byte by byte,
becomes a normal finished bundle in this data dir's spool.

The protocol (``webui/ingest.py`` is its HTTP adapter, ``collector.upload``
its client), all under ``/ingest/v1`` with ``Authorization: Bearer <host token>``:

- ``POST files/missing`` ``{"sha256": [...]}`` -> ``{"missing": [...]}``: which
  captured files the content store (``DATA/files/sha256``) lacks, so a libc
  travels once per fleet;
- ``GET files/<sha256>`` and ``GET bundles/<id>/parts/<core.zst|stack.zst>``:
  ``{"offset": n}``, the bytes received so far (resume after an interruption);
- ``PATCH`` the same URL with ``Upload-Offset`` and ``Upload-Length`` headers:
  bytes appended at that offset. A file is checked against its sha256 and
  moved into the store once complete; a part waits for its commit;
- ``POST bundles/<id>/commit`` ``{"meta": {...}, "files": {files.json},
  "parts": {"core.zst": {"sha256": ..., "size": ...}}}``: every part checked
  against its hash and size, its decompressed size against the meta's (a zip
  bomb is refused), every file named present in the store, the meta checked
  against what was sent; then the bundle is assembled in a staging directory
  and renamed into ``DATA/spool/<id>`` in one step. A repeated commit of a
  stored bundle is a success.

Partial uploads live in ``DATA/ingest/<host>/`` (a host never sees another's).
The bundle's ``hostname`` is the registered name of the host whose token
sent it; what the host claimed is kept as ``claimed_hostname``. Nothing a
host sends is used as a path: bundle ids and hashes are checked against
their patterns, part names against a list, and files.json's paths are
rebuilt component by component under the staging directory.

Every refusal is an ``IngestRefused`` with an HTTP status and one line; a
full disk (507) removes what it was writing, so nothing half-written stays.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from analyzer.errors import CoretriageError
from collector.bundle import Bundle, BundleMeta, is_bundle_id
from collector.spool import write_all
from collector.sysroot import is_sha256

PARTS = (Bundle.CORE, Bundle.STACK)
CHUNK = 1 << 20
MAX_REQUEST = 16 << 20  # one PATCH carries at most this much
MAX_COMMIT = 8 << 20  # the commit's JSON
MAX_FILES = 4096  # entries of one files.json
MAX_ASKED = 10000  # hashes in one files/missing
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class IngestRefused(CoretriageError):
    """An upload refused: an HTTP status, one line, maybe a Retry-After."""

    def __init__(self, status: int, message: str, retry_after: float | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.extra = extra


def _full(what: str) -> IngestRefused:
    return IngestRefused(507, f"the server's disk is full ({what}); try again later", retry_after=15)


class Receiver:
    """One data dir's side of the protocol. ``host`` is always the name the
    token proved (``coretriage.hosts``), never what the host says."""

    def __init__(self, config):
        self.config = config
        self.data_dir = Path(config.data_dir)

    # -- where things go ---------------------------------------------------
    def _host_dir(self, host: str, *parts: str, create: bool = True) -> Path:
        path = self.data_dir.joinpath("ingest", host, *parts)
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @property
    def store_dir(self) -> Path:
        return self.config.files_dir / "sha256"

    def _free(self) -> int:
        st = os.statvfs(self.data_dir)
        return st.f_bavail * st.f_frsize

    def _room_for(self, n: int, what: str) -> None:
        if self._free() - n < self.config.ingest_min_free:
            raise _full(what)

    def sweep(self, older_than: float = 7 * 86400) -> int:
        """Remove partial uploads and staging directories no host touched for
        ``older_than`` seconds (a host that was replaced mid-upload); the number removed."""
        removed = 0
        root = self.data_dir / "ingest"
        before = time.time() - older_than
        for kind in ("files", "bundles", "staging"):
            for path in root.glob(f"*/{kind}/*"):
                try:
                    if os.lstat(path).st_mtime < before:
                        if path.is_dir() and not path.is_symlink():
                            shutil.rmtree(path, ignore_errors=True)
                        else:
                            path.unlink(missing_ok=True)
                        removed += 1
                except OSError:
                    continue
        return removed

    # -- files, by content -------------------------------------------------
    def missing(self, hashes: object) -> list[str]:
        if not isinstance(hashes, list) or len(hashes) > MAX_ASKED or not all(is_sha256(h) for h in hashes):
            raise IngestRefused(400, f'send {{"sha256": [...]}}: at most {MAX_ASKED} lowercase sha256 hex digests')
        return sorted({h for h in hashes if not (self.store_dir / h).is_file()})

    def _file_partial(self, host: str, digest: str) -> Path:
        return self._host_dir(host, "files") / f"{digest}.part"

    def file_status(self, host: str, digest: str) -> dict:
        _check_sha(digest)
        if (self.store_dir / digest).is_file():
            return {"stored": True, "offset": None}
        return {"stored": False, "offset": _size(self._file_partial(host, digest))}

    def write_file(self, host: str, digest: str, offset: int, total: int, body: BinaryIO, length: int) -> dict:
        _check_sha(digest)
        if total > self.config.ingest_max_file:
            raise IngestRefused(413, f"a captured file may be at most {self.config.ingest_max_file} bytes "
                                     f"(ingest_max_file), this one has {total}")
        if (self.store_dir / digest).is_file():
            return {"stored": True, "offset": total}
        partial = self._file_partial(host, digest)

        def complete(fd: int) -> None:
            # moved out of the host's reach before it is hashed: what is hashed is what is stored
            self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            taken = self.store_dir / f".in-{os.urandom(6).hex()}"
            os.rename(partial, taken)
            try:
                if _hash_fd(fd) != digest:
                    raise IngestRefused(400, f"file {digest[:16]}...: its bytes do not have that sha256")
                try:
                    os.link(taken, self.store_dir / digest)
                except FileExistsError:
                    pass  # another host sent the same content meanwhile
            finally:
                taken.unlink(missing_ok=True)

        received = _append(partial, offset, total, body, length, self, complete)
        return {"stored": received >= total, "offset": received}

    # -- a bundle's core and stack core ------------------------------------
    def _part_path(self, host: str, bid: str, part: str, create: bool = True) -> Path:
        _check_bundle(bid)
        if part not in PARTS:
            raise IngestRefused(404, f"no part {part[:40]!r}: only {' and '.join(PARTS)}")
        return self._host_dir(host, "bundles", bid, create=create) / part

    def part_status(self, host: str, bid: str, part: str) -> dict:
        path = self._part_path(host, bid, part, create=False)
        return {"committed": self.committed(host, bid), "offset": _size(path)}

    def write_part(self, host: str, bid: str, part: str, offset: int, total: int, body: BinaryIO,
                   length: int) -> dict:
        path = self._part_path(host, bid, part)
        if total > self.config.ingest_max_core:
            raise IngestRefused(413, f"{part} may be at most {self.config.ingest_max_core} bytes "
                                     f"(ingest_max_core), this one has {total}")
        if self.committed(host, bid):
            return {"committed": True, "offset": total}
        return {"committed": False, "offset": _append(path, offset, total, body, length, self)}

    # -- commit ----------------------------------------------------------------
    def committed(self, host: str, bid: str) -> bool:
        """Whether the spool holds this bundle from this host; a bundle of
        that id from another host is a conflict."""
        meta = self.config.spool_dir / bid / Bundle.META
        try:
            with open(meta, "rb") as f:
                stored = json.loads(f.read(64 << 20))
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            raise IngestRefused(409, f"bundle {bid} exists on the server and cannot be read") from None
        if stored.get("uploaded_by") != host:
            raise IngestRefused(409, f"bundle {bid} was uploaded by another host")
        return True

    def commit(self, host: str, bid: str, body: object) -> tuple[Path, BundleMeta, bool]:
        """(bundle dir, its meta, whether it is new). Raises IngestRefused."""
        _check_bundle(bid)
        if self.committed(host, bid):
            bundle = self.config.spool_dir / bid
            return bundle, BundleMeta.from_json((bundle / Bundle.META).read_bytes()), False
        if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
            raise IngestRefused(400, 'send {"meta": {...}, "files": {...}, "parts": {...}}')
        claimed = dict(body["meta"])
        try:
            meta = BundleMeta.from_dict(claimed)
        except (TypeError, ValueError) as exc:
            raise IngestRefused(400, f"lying or malformed meta.json: {str(exc).splitlines()[0][:200]}") from None
        if meta.id != bid:
            raise IngestRefused(400, f"meta.json is of bundle {meta.id}, not {bid}")
        parts = _parts(body.get("parts"))
        _meta_matches_parts(meta, parts)
        if Bundle.CORE in parts and meta.core_size > self.config.ingest_max_core:
            raise IngestRefused(413, f"the core has {meta.core_size} bytes, more than ingest_max_core "
                                     f"({self.config.ingest_max_core})")
        files = manifest_entries(body.get("files"))
        missing = sorted({e["sha256"] for e in files if not (self.store_dir / e["sha256"]).is_file()})
        if missing:
            raise IngestRefused(409, f"{len(missing)} captured file(s) not uploaded yet", missing=missing)
        for part, (_, size) in parts.items():  # cheap first: a part not complete yet is not taken
            have = _size(self._part_path(host, bid, part, create=False))
            if have != size:
                raise IngestRefused(409, f"{part}: {have} of {size} bytes received", part=part, offset=have)
        values = json.loads(json.dumps(meta.to_dict()))  # tuples as lists, as meta.json holds them
        values.update(hostname=host, claimed_hostname=claimed.get("hostname") if isinstance(
            claimed.get("hostname"), str) else None, uploaded_by=host, uploaded_at=time.time())
        bundle = self._assemble(host, bid, meta, parts, files, values)
        return bundle, BundleMeta.from_dict(values), True

    def _take_part(self, host: str, bid: str, part: str, digest: str, size: int, limit: int, staging: Path) -> None:
        """Move a received part into the staging directory under its lock (no
        request can append to it from then on), then check the bytes moved:
        size, sha256, and a decompressed size within ``limit``."""
        path = self._part_path(host, bid, part, create=False)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise IngestRefused(409, f"{part}: 0 of {size} bytes received", part=part, offset=0) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IngestRefused(409, f"{part} is still being uploaded", retry_after=2) from None
            if not _names(path, fd):
                raise IngestRefused(409, f"{part} changed meanwhile; try again", retry_after=2)
            os.rename(path, staging / part)
            if os.fstat(fd).st_size != size or _hash_fd(fd) != digest:
                raise IngestRefused(400, f"{part}: its bytes do not have the sha256 and size sent")
            _check_decompressed(fd, part, limit)
        finally:
            os.close(fd)

    def _assemble(self, host: str, bid: str, meta: BundleMeta, parts: dict, files: list[dict],
                  values: dict) -> Path:
        """Staging directory -> DATA/spool/<id>, in one rename. A full disk
        removes the staging directory and answers 507; a part that is not
        what was promised is removed (the host must send it again)."""
        from collector.spool import open_spool

        os.close(open_spool(self.config.spool_dir))  # made, ours, 0700
        staging = self._host_dir(host, "staging") / f"{bid}.{os.urandom(4).hex()}"
        try:
            staging.mkdir(mode=0o700)
            for part, (digest, size) in parts.items():
                limit = min(self.config.ingest_max_core,
                            meta.core_size if part == Bundle.CORE else (meta.stack_core_size or 0))
                self._take_part(host, bid, part, digest, size, limit, staging)
            if files:
                root = staging / Bundle.ROOT
                root.mkdir(mode=0o700)
                for entry in files:
                    link_into(root, entry["path"], self.store_dir / entry["sha256"])
                write_new(staging / Bundle.FILES, json.dumps({"schema": 1, "files": files}, indent=1,
                                                          ensure_ascii=True).encode() + b"\n")
            # meta.json last: the bundle is finished
            write_new(staging / Bundle.META, (json.dumps(values, indent=1, ensure_ascii=True) + "\n").encode())
            target = self.config.spool_dir / bid
            try:
                os.rename(staging, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if not self.committed(host, bid):  # another request stored it meanwhile
                    raise IngestRefused(409, f"bundle {bid} exists on the server") from None
            fd = os.open(self.config.spool_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _full("storing the bundle") from None
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(self._host_dir(host, "bundles", bid, create=False), ignore_errors=True)
        return target


# ---- checks of what a host sends (pure) -------------------------------------

def _check_sha(digest: str) -> None:
    if not is_sha256(digest):
        raise IngestRefused(400, "not a sha256 (64 lowercase hex digits)")


def _check_bundle(bid: str) -> None:
    if not is_bundle_id(bid):
        raise IngestRefused(400, "not a bundle id")


def _parts(value: object) -> dict[str, tuple[str, int]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IngestRefused(400, 'parts must be {"core.zst": {"sha256": ..., "size": ...}}')
    out = {}
    for name, item in value.items():
        if name not in PARTS:
            raise IngestRefused(400, f"no part {str(name)[:40]!r}: only {' and '.join(PARTS)}")
        if not isinstance(item, dict) or not is_sha256(item.get("sha256")) or isinstance(item.get("size"), bool) \
                or not isinstance(item.get("size"), int) or item["size"] < 0:
            raise IngestRefused(400, f'{name}: send {{"sha256": "<64 hex>", "size": <bytes>}}')
        out[name] = (item["sha256"], item["size"])
    return out


def _meta_matches_parts(meta: BundleMeta, parts: dict) -> None:
    """meta.json names exactly the cores sent (a host that leaves the full
    core behind says so in the meta it sends)."""
    for part, field_value in ((Bundle.CORE, meta.core_file), (Bundle.STACK, meta.stack_core_file)):
        if (field_value is not None) != (part in parts):
            raise IngestRefused(400, f"lying meta.json: it {'names' if field_value else 'does not name'} "
                                     f"{part}, which was {'not ' if part not in parts else ''}sent")
        if field_value is not None and field_value != part:
            raise IngestRefused(400, f"lying meta.json: its core file is {field_value[:40]!r}, not {part}")


def manifest_entries(value: object) -> list[dict]:
    """files.json's entries, each path checked: absolute, normalised, no
    '..', no NUL, no empty or '.' component, no path twice and none below
    another's file."""
    if value is None:
        return []
    entries = value.get("files") if isinstance(value, dict) else None
    if not isinstance(entries, list) or len(entries) > MAX_FILES:
        raise IngestRefused(400, f'files must be files.json: {{"files": [...]}} with at most {MAX_FILES} entries')
    out, seen = [], set()
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str) or not is_sha256(e.get("sha256")):
            raise IngestRefused(400, 'each files.json entry must be {"path": "/...", "sha256": "<64 hex>"}')
        path = e["path"]
        parts = path.split("/")
        if (len(path) > 4096 or not path.startswith("/") or "\0" in path
                or any(p in ("", ".", "..") for p in parts[1:]) or len(parts) > 40):
            raise IngestRefused(400, f"files.json: refused path {path[:80]!r} (absolute and normalised only)")
        if path in seen or any(str(parent) in seen for parent in PurePosixPath(path).parents):
            raise IngestRefused(400, f"files.json: path {path[:80]!r} twice, or below another file")
        seen.add(path)
        size = e.get("size")
        out.append({"path": path, "sha256": e["sha256"],
                    "build_id": e.get("build_id") if isinstance(e.get("build_id"), str) else None,
                    "size": size if isinstance(size, int) and not isinstance(size, bool) else None})
    for path in seen:  # a file where another path needs a directory
        for parent in PurePosixPath(path).parents:
            if str(parent) in seen:
                raise IngestRefused(400, f"files.json: {str(parent)[:80]!r} is a file and a directory")
    return out


# ---- file system helpers ---------------------------------------------------

def _size(path: Path) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, offset: int, total: int, body: BinaryIO, length: int, receiver: Receiver,
            complete=None) -> int:
    """Append ``length`` bytes of ``body`` to ``path`` at ``offset`` (which
    must be its size); the new size. One writer at a time per file (flock),
    and only while ``path`` still names the file locked (a commit moves a
    part away under the lock). ``complete(fd)`` runs, still locked, once the
    file has ``total`` bytes. A body cut short keeps what arrived; a full
    disk removes the file."""
    if offset < 0 or total < 0 or length < 0 or offset + length > total:
        raise IngestRefused(400, "Upload-Offset + Content-Length must not pass Upload-Length")
    try:
        receiver._room_for(length, "no room for the upload")
    except IngestRefused:
        path.unlink(missing_ok=True)  # nothing half-written stays; the host sends it again later
        raise
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestRefused(409, "this file is being uploaded by another request", offset=None) from None
        if not _names(path, fd):
            raise IngestRefused(409, "this upload was taken meanwhile; ask for its state again", offset=None)
        have = os.fstat(fd).st_size
        if have != offset:
            raise IngestRefused(409, f"the server has {have} bytes, not {offset}: resume from there", offset=have)
        os.lseek(fd, offset, os.SEEK_SET)
        left = length
        try:
            while left:
                chunk = body.read(min(CHUNK, left))
                if not chunk:
                    break
                write_all(fd, chunk)
                left -= len(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                os.close(fd)
                fd = -1
                path.unlink(missing_ok=True)
                raise _full("writing the upload") from None
            raise
        except Exception:
            pass  # the client went away mid-body: what arrived is kept, to resume from
        os.fsync(fd)
        size = os.fstat(fd).st_size
        if complete is not None and size >= total:
            complete(fd)
        return size
    finally:
        if fd >= 0:
            os.close(fd)


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _hash_fd(fd: int) -> str:
    from collector.sysroot import hash_fd

    return hash_fd(fd, os.fstat(fd).st_size)


def write_new(path: Path, data: bytes) -> None:
    """A new file (never one already there, never through a link), 0600, synced."""
    fd = os.open(path, _CREATE, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def link_into(root: Path, path: str, stored: Path) -> None:
    """Hard-link ``stored`` at ``root/<path>``, making directories one
    component at a time (the staging tree is new: nothing in it is a link)."""
    parts = path.split("/")[1:]
    where = root
    for name in parts[:-1]:
        where = where / name
        try:
            where.mkdir(mode=0o700)
        except FileExistsError:
            if where.is_symlink() or not where.is_dir():
                raise IngestRefused(400, f"files.json: {path[:80]!r} goes through a file") from None
    os.link(stored, where / parts[-1], follow_symlinks=False)


def _check_decompressed(fd: int, part: str, limit: int) -> None:
    """A zstd stream that decompresses to at most ``limit`` bytes; stops
    reading as soon as it passes (a zip bomb costs ``limit`` bytes of work)."""
    import zstandard

    total = 0
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=CHUNK)
            while chunk := reader.read(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise IngestRefused(400, f"{part} decompresses to more than the {limit} bytes meta.json "
                                             "says (a zip bomb?)")
    except zstandard.ZstdError as exc:
        raise IngestRefused(400, f"{part} is not valid zstd: {str(exc)[:120]}") from None
