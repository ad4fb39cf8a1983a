"""Read what the kernel wrote into a core's notes, without gdb.

``read_core(stream)`` takes an open binary stream (as pyelftools' ELFFile
does) and returns a frozen ``CoreNotes``: process id, command line, signal,
mapped files with their load bases and the build-ids found in the core's own
memory, and the architecture from the ELF header. Little-endian Linux cores
of 64-bit (x86-64, aarch64) and 32-bit (arm, i386) machines are understood;
cores without NT_FILE or NT_SIGINFO (qemu-user's) give what their other
notes say: the signal from NT_PRSTATUS, the program's name from AT_EXECFN.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from analyzer.arch import Arch, NotELF, architecture
from analyzer.elfid import build_id
from analyzer.signals import parse_siginfo

AT_ENTRY = 9
AT_EXECFN = 31


class NotACore(Exception):
    """The file is not an ELF core dump: the message says what it is."""


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    offset: int  # in bytes, into the mapped file
    path: str


@dataclass(frozen=True)
class CoreNotes:
    pid: int | None
    uid: int | None
    fname: str | None  # the kernel's 15-character comm
    psargs: str | None  # first 80 bytes of the command line
    signal: int | None
    si_code: int | None
    fault_address: int | None
    sender_pid: int | None
    entry: int | None
    execfn_addr: int | None
    thread_lwps: tuple[int, ...]
    mappings: tuple[Mapping, ...]
    truncated: bool
    build_ids: tuple[tuple[str, str], ...]  # (path, build-id) read from core memory
    arch: Arch | None = None
    execfn: str | None = None  # AT_EXECFN's string, read from core memory when no NT_FILE names the program
    sender_uid: int | None = None

    @property
    def executable(self) -> str | None:
        """The mapped file that holds the entry point: the program itself."""
        if self.entry is not None:
            for m in self.mappings:
                if m.start <= self.entry < m.end:
                    return m.path
        return self.mappings[0].path if self.mappings else self.execfn

    def module_bases(self) -> dict[str, tuple[int, int]]:
        """path -> (load base, end of last mapping) for every mapped file."""
        spans: dict[str, tuple[int, int]] = {}
        for m in self.mappings:
            base = m.start - m.offset
            lo, hi = spans.get(m.path, (base, m.end))
            spans[m.path] = (min(lo, base), max(hi, m.end))
        return spans


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _siginfo(desc: bytes, bits: int = 64):
    info = parse_siginfo(desc, bits)
    if info is None:
        return None, None, None, None, None
    return info.signo, info.code, info.address, info.sender_pid, info.sender_uid


def _auxv(desc: bytes, bits: int = 64) -> dict[int, int]:
    out = {}
    word = "<QQ" if bits == 64 else "<II"
    size = struct.calcsize(word)
    for i in range(0, len(desc) - size + 1, size):
        key, val = struct.unpack_from(word, desc, i)
        if key == 0:
            break
        out[key] = val
    return out


def _prstatus(desc: bytes, bits: int) -> tuple[int, int | None]:
    """(pr_cursig, pr_pid) of an NT_PRSTATUS: the signal after pr_info's
    three ints, the thread id after the two signal masks (longs)."""
    (cursig,) = struct.unpack_from("<h", desc, 12)
    pid_at = 32 if bits == 64 else 24
    lwp = struct.unpack_from("<i", desc, pid_at)[0] if len(desc) >= pid_at + 4 else None
    return cursig, lwp


class _CoreMemory:
    """Read bytes at a virtual address from the core's PT_LOAD segments."""

    def __init__(self, elf: ELFFile, stream, size: int):
        self.stream = stream
        self.size = size
        self.loads = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]

    def read(self, addr: int, length: int) -> bytes | None:
        for h in self.loads:
            if h.p_vaddr <= addr and addr + length <= h.p_vaddr + h.p_filesz:
                off = h.p_offset + addr - h.p_vaddr
                if off + length > self.size:
                    return None
                self.stream.seek(off)
                return self.stream.read(length)
        return None

    def read_upto(self, addr: int, length: int) -> bytes:
        """Up to ``length`` bytes, fewer where the segment (or the file) ends."""
        for h in self.loads:
            if h.p_vaddr <= addr < h.p_vaddr + h.p_filesz:
                off = h.p_offset + addr - h.p_vaddr
                length = min(length, h.p_vaddr + h.p_filesz - addr, max(0, self.size - off))
                self.stream.seek(off)
                return self.stream.read(length)
        return b""


def read_core(stream) -> CoreNotes:
    """Parse an open core file. Raises NotACore with a one-line reason."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    magic = stream.read(4)
    if magic != b"\x7fELF":
        raise NotACore("not an ELF file" if size else "empty file")
    stream.seek(0)
    try:
        elf = ELFFile(stream)
    except (ELFError, struct.error) as exc:
        raise NotACore(f"unreadable ELF header: {exc}") from None
    if elf.header.e_type != "ET_CORE":
        raise NotACore(f"an ELF {elf.header.e_type} file, not a core dump")
    stream.seek(0)
    try:
        arch = architecture(stream.read(20))
    except NotELF as exc:
        raise NotACore(str(exc)) from None
    if not elf.little_endian:
        raise NotACore(f"a big-endian {arch.name} core: only little-endian cores are supported")
    bits = arch.bits

    pid = uid = fname = psargs = None
    signo = code = addr = sender = sender_uid = None
    aux: dict[int, int] = {}
    lwps: list[int] = []
    status_signal = None  # the first thread's pr_cursig, for cores without NT_SIGINFO (qemu's)
    mappings: list[Mapping] = []
    truncated = False
    for seg in elf.iter_segments():
        h = seg.header
        if h.p_offset + h.p_filesz > size:
            truncated = True
        if h.p_type != "PT_NOTE" or h.p_offset + h.p_filesz > size:
            continue
        try:
            notes = list(seg.iter_notes())
        except (ELFError, struct.error, ValueError):
            truncated = True
            continue
        for note in notes:
            kind, desc = note["n_type"], note["n_desc"]
            if kind == "NT_PRPSINFO":
                pid, uid = desc.pr_pid, desc.pr_uid
                fname, psargs = _cstr(desc.pr_fname), _cstr(desc.pr_psargs).strip()
            elif kind == "NT_PRSTATUS" and isinstance(desc, bytes) and len(desc) >= 28:
                cursig, lwp = _prstatus(desc, bits)
                if lwp is not None:
                    lwps.append(lwp)
                if status_signal is None and cursig > 0:
                    status_signal = cursig
            elif kind == "NT_SIGINFO" and isinstance(desc, bytes) and len(desc) >= 24:
                signo, code, addr, sender, sender_uid = _siginfo(desc, bits)
            elif kind == "NT_AUXV" and isinstance(desc, bytes):
                aux = _auxv(desc, bits)
            elif kind == "NT_FILE":
                page = desc.page_size
                for entry, name in zip(desc.Elf_Nt_File_Entry, desc.filename):
                    mappings.append(Mapping(entry.vm_start, entry.vm_end, entry.page_offset * page,
                                            name.decode("utf-8", "replace") if isinstance(name, bytes) else name))

    if signo is None and status_signal is not None:
        signo = status_signal  # no si_code, fault address nor sender without NT_SIGINFO
    memory = _CoreMemory(elf, stream, size)
    build_ids = []
    seen = set()
    for m in mappings:
        if m.offset == 0 and m.path not in seen:
            seen.add(m.path)
            # the kernel dumps every file mapping's ELF headers (coredump_filter bit 4)
            bid = build_id(memory.read, m.start, in_file=False)
            if bid:
                build_ids.append((m.path, bid))
    execfn = None
    if not mappings and aux.get(AT_EXECFN):  # qemu's cores have no NT_FILE: the name exec was given
        raw = memory.read_upto(aux[AT_EXECFN], 256)
        execfn = _cstr(raw) if b"\0" in raw else None
    return CoreNotes(pid=pid, uid=uid, fname=fname, psargs=psargs, signal=signo, si_code=code,
                     fault_address=addr, sender_pid=sender, sender_uid=sender_uid, entry=aux.get(AT_ENTRY),
                     execfn_addr=aux.get(AT_EXECFN), thread_lwps=tuple(lwps),
                     mappings=tuple(mappings), truncated=truncated, build_ids=tuple(build_ids), arch=arch,
                     execfn=execfn or None)
