"""The local symbol store: debug files indexed by build-id in ``DATA/symbols``.

The layout is gdb's own (``.build-id/xx/rest.debug`` for debug info,
``.build-id/xx/rest`` for a whole executable or library), so the directory
can be given to gdb's ``debug-file-directory`` as it is. Beside each file a
``.meta`` JSON says where it came from (``upload``: ``coretriage symbols
add``; ``debuginfod``: fetched; ``capture``: an unstripped build a crashed
process mapped) and when. Fetched files are a cache: over ``max_bytes`` the
oldest fetched ones go first; uploads are never evicted. A build-id a
debuginfod server did not have is remembered in ``misses/`` so it is not
asked for again within a TTL.

Everything added is hostile input: a file is taken only if it is a regular
ELF file with a GNU build-id (read with ``analyzer.elfid``: a few fixed-size
structs), it is filed by that build-id and never by the name it came with,
and it is copied under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from analyzer.errors import CoretriageError

BUILD_ID = re.compile(r"[0-9a-f]{16,128}")
DEBUGINFO, EXECUTABLE = "debuginfo", "executable"
ORIGINS = ("upload", "debuginfod", "capture")
MAX_FILE = 4 << 30  # a single debug file larger than this is refused


class SymbolError(CoretriageError):
    """A file that cannot be a symbol file, or a store that cannot take it."""


@dataclass(frozen=True)
class ElfKind:
    """What a candidate file is: its build-id and whether it carries DWARF
    (``debug``) and loadable code (``code``: a whole executable or library,
    not a split debug file whose sections are empty)."""

    build_id: str
    debug: bool
    code: bool


@dataclass(frozen=True)
class SymbolFile:
    build_id: str
    kind: str  # DEBUGINFO | EXECUTABLE
    size: int
    origin: str
    name: str  # the name it was added under (shown only, never used as a path)
    added: float
    path: Path


def elf_kind(fd: int) -> ElfKind | None:
    """Of an open regular file: None unless it is an ELF file with a build-id."""
    from analyzer import elfid

    read = elfid.fd_reader(fd)
    if read(0, 4) != b"\x7fELF":
        return None
    facts = elfid.section_facts(read)
    build_id, names = (facts if facts else (None, frozenset()))
    build_id = build_id or elfid.build_id(read)
    if not build_id or not BUILD_ID.fullmatch(build_id):
        return None
    debug = ".debug_info" in names or ".zdebug_info" in names
    return ElfKind(build_id, debug, _has_code(read))


def _has_code(read) -> bool:
    """Whether the file's ``.text`` holds bytes (a split debug file keeps the
    section header but as NOBITS)."""
    import struct

    ehdr = read(0, 64)
    if not ehdr or len(ehdr) < 64 or ehdr[4] != 2:
        return False
    (shoff,) = struct.unpack_from("<Q", ehdr, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ehdr, 58)
    if shentsize != 64 or not 0 < shnum <= 4096 or shstrndx >= shnum:
        return False
    shdrs = read(shoff, 64 * shnum) or b""
    if len(shdrs) < 64 * shnum:
        return False
    str_offset, str_size = struct.unpack_from("<QQ", shdrs, shstrndx * 64 + 24)
    strtab = read(str_offset, min(str_size, 1 << 20)) or b""
    for i in range(shnum):
        name, kind = struct.unpack_from("<II", shdrs, i * 64)
        end = strtab.find(b"\0", name)
        if strtab[name:end] == b".text":
            return kind != 8  # SHT_NOBITS
    return False


class SymbolStore:
    def __init__(self, root: Path, max_bytes: int = 2 << 30, miss_ttl: float = 86400.0):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.miss_ttl = miss_ttl

    # -- where things are --------------------------------------------------
    def path(self, build_id: str, kind: str = DEBUGINFO) -> Path:
        if not BUILD_ID.fullmatch(build_id or ""):
            raise SymbolError(f"{build_id!r} is not a build-id (hex digits)")
        name = build_id[2:] + (".debug" if kind == DEBUGINFO else "")
        return self.root / ".build-id" / build_id[:2] / name

    def lookup(self, build_id: str, kind: str = DEBUGINFO) -> Path | None:
        try:
            path = self.path(build_id, kind)
        except SymbolError:
            return None
        return path if path.is_file() and not path.is_symlink() else None

    # -- adding --------------------------------------------------------------
    def add_fd(self, fd: int, kind_of: ElfKind, origin: str, name: str) -> list[SymbolFile]:
        """File an open, checked ELF file: as debug info when it has DWARF,
        as the executable when it has code (an unstripped build is both)."""
        kinds = ([DEBUGINFO] if kind_of.debug else []) + ([EXECUTABLE] if kind_of.code else [])
        out = []
        for kind in kinds:
            dest = self.path(kind_of.build_id, kind)
            if dest.is_file():  # a build-id names one build: the first copy stays
                out.append(self._entry(dest, kind_of.build_id, kind))
                continue
            self._private(dest.parent)
            tmp_fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                with os.fdopen(tmp_fd, "wb") as out_file:
                    while chunk := os.read(fd, 1 << 20):
                        out_file.write(chunk)
                    out_file.flush()
                    os.fsync(out_file.fileno())
                os.chmod(tmp, 0o600)
                self._write_meta(dest, origin, name)
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            out.append(self._entry(dest, kind_of.build_id, kind))
        self.forget_miss(kind_of.build_id)
        if origin == "debuginfod":
            self.evict()
        return out

    def add_path(self, path: Path, origin: str, name: str | None = None) -> list[SymbolFile]:
        """A file by path, opened without following a symlink; only a regular ELF file with a build-id."""
        fd, kind_of = open_elf(path)
        try:
            if kind_of is None:
                raise SymbolError(f"{path}: not an ELF file with a GNU build-id")
            return self.add_fd(fd, kind_of, origin, name or Path(path).name)
        finally:
            os.close(fd)

    def _write_meta(self, dest: Path, origin: str, name: str) -> None:
        meta = Path(str(dest) + ".meta")
        text = json.dumps({"origin": origin, "name": name[:200], "added": time.time()})
        fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def _entry(self, path: Path, build_id: str, kind: str) -> SymbolFile:
        try:
            meta = json.loads(Path(str(path) + ".meta").read_text())
        except (OSError, ValueError):
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        st = path.stat()
        origin = meta.get("origin") if meta.get("origin") in ORIGINS else "upload"
        return SymbolFile(build_id, kind, st.st_size, origin, str(meta.get("name") or "")[:200],
                          float(meta.get("added") or st.st_mtime), path)

    @staticmethod
    def _private(path: Path) -> None:
        from coretriage.datadir import private_dirs

        private_dirs(path)

    # -- reading the index ---------------------------------------------------
    def entries(self) -> list[SymbolFile]:
        base = self.root / ".build-id"
        out = []
        if not base.is_dir():
            return out
        for top in sorted(base.iterdir()):
            if not re.fullmatch(r"[0-9a-f]{2}", top.name) or top.is_symlink() or not top.is_dir():
                continue
            for f in sorted(top.iterdir()):
                name = f.name
                kind = DEBUGINFO if name.endswith(".debug") else EXECUTABLE
                rest = name.removesuffix(".debug")
                if f.is_symlink() or not f.is_file() or not re.fullmatch(r"[0-9a-f]+", rest):
                    continue
                with contextlib.suppress(OSError):
                    out.append(self._entry(f, top.name + rest, kind))
        return out

    def remove(self, build_id: str) -> list[SymbolFile]:
        gone = []
        for kind in (DEBUGINFO, EXECUTABLE):
            found = self.lookup(build_id, kind)
            if found is not None:
                gone.append(self._entry(found, build_id, kind))
                found.unlink()
                Path(str(found) + ".meta").unlink(missing_ok=True)
        return gone

    def evict(self) -> None:
        """Fetched files, oldest first, while the store is over ``max_bytes``."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        for e in sorted((e for e in entries if e.origin == "debuginfod"), key=lambda e: e.added):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                e.path.unlink()
                Path(str(e.path) + ".meta").unlink(missing_ok=True)
                total -= e.size

    # -- misses ----------------------------------------------------------------
    def _miss(self, build_id: str) -> Path:
        return self.root / "misses" / build_id

    def missed_recently(self, build_id: str, now: float | None = None) -> bool:
        try:
            when = self._miss(build_id).stat().st_mtime
        except (OSError, ValueError):
            return False
        return (now or time.time()) - when < self.miss_ttl

    def note_miss(self, build_id: str) -> None:
        if not BUILD_ID.fullmatch(build_id):
            return
        path = self._miss(build_id)
        self._private(path.parent)
        path.touch(mode=0o600)
        os.utime(path)

    def forget_miss(self, build_id: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._miss(build_id).unlink()


def open_elf(path: Path) -> tuple[int, ElfKind | None]:
    """An open descriptor of ``path`` (no symlink, no FIFO or device opened
    for reading) and what it is; the caller closes it."""
    try:
        handle = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SymbolError(f"{path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise SymbolError(f"{path}: not a regular file")
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise SymbolError(f"{path}: {exc.strerror}") from None
    finally:
        os.close(handle)
    try:
        if os.fstat(fd).st_size > MAX_FILE:
            raise SymbolError(f"{path}: larger than {MAX_FILE >> 30} GiB")
        return fd, elf_kind(fd)
    except BaseException:
        os.close(fd)
        raise


def store_of(config) -> SymbolStore:
    return SymbolStore(config.data_dir / "symbols", config.symbol_cache_size, config.symbol_miss_ttl)
