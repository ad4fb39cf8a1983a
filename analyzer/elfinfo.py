"""Facts about ELF files on disk: build-id, how much symbol information they
carry, and which C library they are. Pure functions over open streams, plus
``find_module`` which decides where a mapped file is read from.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from analyzer.elfid import section_facts

DEBUG_ROOT = Path("/usr/lib/debug")


@dataclass(frozen=True)
class ElfFacts:
    build_id: str | None
    symbols: str  # "debug", "symtab", "dynsym" or "none"


def elf_facts(stream) -> ElfFacts:
    def read(position: int, size: int) -> bytes:
        stream.seek(position)
        return stream.read(size)

    fast = section_facts(read)
    if fast is not None:
        build_id, names = fast
    else:  # not 64-bit little-endian, or odd headers: pyelftools knows them all
        build_id, names = facts_by_pyelftools(stream)
    if ".debug_info" in names:
        symbols = "debug"
    elif ".symtab" in names:
        symbols = "symtab"
    elif ".dynsym" in names:
        symbols = "dynsym"
    else:
        symbols = "none"
    return ElfFacts(build_id, symbols)


def facts_by_pyelftools(stream) -> tuple[str | None, set[str]]:
    build_id = None
    names = set()
    for section in ELFFile(stream).iter_sections():
        names.add(section.name)
        if section.header.sh_type == "SHT_NOTE" and build_id is None:
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    build_id = note["n_desc"]
    return build_id, names


def fixed_span(path: Path) -> tuple[int, int] | None:
    """(lowest, end) address of a non-PIE program's loaded segments: where
    it is in memory whatever loaded it. None for a PIE or shared object
    (their base is the loader's choice) or anything unreadable."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf.header.e_type != "ET_EXEC":
                return None
            loads = [seg.header for seg in elf.iter_segments() if seg.header.p_type == "PT_LOAD"]
    except (OSError, ELFError, ValueError):
        return None
    if not loads:
        return None
    return min(h.p_vaddr for h in loads), max(h.p_vaddr + h.p_memsz for h in loads)


def debug_file_for(build_id: str | None, roots: tuple[Path, ...] = (DEBUG_ROOT,)) -> Path | None:
    """The separate debug file gdb would load for this build-id, if any."""
    if not build_id or len(build_id) < 3:
        return None
    for root in roots:
        candidate = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
        if candidate.exists():
            return candidate
    return None


def find_module(path: str, sysroot: Path | None, executable: Path | None,
                is_executable: bool, build_id: str | None = None) -> Path | None:
    """Where to read a mapped file: the captured sysroot first (the crashed
    process's own files), then the executable given on the command line,
    then the same path on this host. A host file is used only when its
    build-id is the one the core recorded: the same build, whatever host it
    is on. A host file the core records no build-id for cannot be checked
    and is not used (``host_file_refused`` says why)."""
    rel = path.lstrip("/")
    if sysroot is not None:
        candidate = sysroot / rel
        if candidate.is_file():
            return candidate
    if is_executable and executable is not None and executable.is_file():
        return executable
    candidate = Path(path)
    if build_id and candidate.is_file():
        facts = safe_facts(candidate)
        if facts is not None and facts.build_id == build_id:
            return candidate
    return None


def refusal(path: str, have: str | None, want: str | None, show_ids: bool = True) -> str | None:
    """Why a host ELF file at ``path`` whose build-id is ``have`` is not used
    for a module the core records with build-id ``want``; None when it is.
    ``show_ids=False`` for a file the analysis could not read itself: its
    build-id is not the analysis' to learn."""
    if not want:
        return (f"{path} on this host not used: the core records no build-id to check it against "
                "(pass --exe or --sysroot with the files that crashed)")
    if have != want:
        ids = f" (build-id {have[:12] if have else 'none'}, core has {want[:12]})" if show_ids else ""
        return f"{path} on this host is not the build that crashed{ids}: not used"
    return None


def host_file_refused(path: str, build_id: str | None) -> str | None:
    """Why the file at ``path`` on this host was not used for a module the
    core maps, or None when there is no such file (or it is not ELF)."""
    candidate = Path(path)
    if not candidate.is_file():
        return None
    facts = safe_facts(candidate)
    if facts is None:
        return None
    return refusal(path, facts.build_id, build_id)


_GLIBC = re.compile(rb"GNU C Library [^\n\0]{0,120}?version (\d+\.\d+(?:\.\d+)?)")
_MUSL_VERSION = re.compile(rb"\0(1\.\d+\.\d+)\0")


def libc_of(paths: list[str], read) -> str | None:
    """Name and version of the C library among mapped files.

    ``read(path)`` returns an mmap-able open binary file or None.
    """
    for path in paths:
        base = os.path.basename(path)
        if base.startswith("libc.so.6") or base.startswith("libc-2."):
            return _versioned("glibc", _GLIBC, read(path))
    for path in paths:
        base = os.path.basename(path)
        if base.startswith("ld-musl-") or base == "libc.musl-x86_64.so.1" or "/musl/" in path:
            return _versioned("musl", _MUSL_VERSION, read(path))
    return None


def _versioned(name: str, pattern: re.Pattern, handle) -> str:
    if handle is None:
        return name
    with handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                match = pattern.search(data)
                version = match.group(1).decode() if match else None
        except (ValueError, OSError):
            return name
    return f"{name} {version}" if version else name


_MUSL_BUILD = re.compile(rb"musl-(\d+\.\d+\.\d+)")


def static_libc(exe_stream) -> str | None:
    """A static binary carries its C library inside: glibc leaves its banner,
    musl its build path (with debug info) or its ``_start_c`` entry symbol."""
    try:
        data = mmap.mmap(exe_stream.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError):
        return None
    with data:
        match = _GLIBC.search(data)
        if match:
            return f"glibc {match.group(1).decode()}"
        match = _MUSL_BUILD.search(data)
        if match:
            return f"musl {match.group(1).decode()}"
        if data.find(b"_start_c\0") >= 0:
            return "musl"
    return None


def soname(path: Path) -> str | None:
    """DT_SONAME of a shared library: the name the dynamic loader (and so
    the core's link map, and gdb) calls it by, e.g. ``liblua5.3.so.0`` for
    the file ``liblua5.3.so.0.0.0``."""
    try:
        with open(path, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if section.header.sh_type == "SHT_DYNAMIC":
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_SONAME":
                            return tag.soname
    except (OSError, ELFError, ValueError):
        return None
    return None


def safe_facts(path: Path) -> ElfFacts | None:
    try:
        with open(path, "rb") as f:
            return elf_facts(f)
    except (OSError, ELFError, ValueError):
        return None
