"""GNU build-ids from ELF images, with nothing but struct: the pipe handler
must stay light, and the analyzer reads the same notes from core memory.
``section_facts`` reads a file's section names and build-id the same way:
pyelftools builds an object per section, several times slower, and this
runs for every module of every crash.

``build_id(read, base, in_file)``: ``read(position, size) -> bytes | None``
reads the image; ``in_file`` says whether positions are file offsets (an
ELF file) or virtual addresses with the image loaded at ``base`` (memory).
"""

from __future__ import annotations

import struct

PT_NOTE = 4
SHT_NOTE = 7
NT_GNU_BUILD_ID = 3
ET_DYN = 3
MAX_SECTIONS = 4096
MAX_STRTAB = 1 << 20


def build_id(read, base: int = 0, in_file: bool = True) -> str | None:
    """Of a little-endian image, 64-bit or 32-bit (arm, i386)."""
    ehdr = read(base, 64)
    if not ehdr or len(ehdr) < 52 or ehdr[:4] != b"\x7fELF" or ehdr[4] not in (1, 2) or ehdr[5] != 1:
        return None  # only little-endian images
    (e_type,) = struct.unpack_from("<H", ehdr, 16)
    if ehdr[4] == 2:
        if len(ehdr) < 64:
            return None
        (phoff,) = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        size, entry = 56, "<I4xQQ8xQ"  # p_type, p_offset, p_vaddr, p_filesz
    else:
        (phoff,) = struct.unpack_from("<I", ehdr, 28)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 42)
        size, entry = 32, "<III4xI"
    if phnum > 64 or phentsize != size:
        return None
    phdrs = read(base + phoff, phentsize * phnum)
    if not phdrs or len(phdrs) < phentsize * phnum:
        return None
    # in memory, ET_DYN images are relative to the load base, ET_EXEC absolute
    bias = base if e_type == ET_DYN or in_file else 0
    for i in range(phnum):
        p_type, offset, vaddr, filesz = struct.unpack_from(entry, phdrs, i * phentsize)
        if p_type != PT_NOTE or filesz > 4096:
            continue
        notes = read(bias + (offset if in_file else vaddr), filesz)
        if notes:
            found = _find(notes)
            if found:
                return found
    return None


def section_facts(read) -> tuple[str | None, frozenset[str]] | None:
    """(build-id from the note sections, section names) of a 64-bit
    little-endian ELF file; None for any other file or a header out of
    bounds (the caller then asks pyelftools)."""
    ehdr = read(0, 64)
    if not ehdr or len(ehdr) < 64 or ehdr[:4] != b"\x7fELF" or ehdr[4] != 2 or ehdr[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", ehdr, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ehdr, 58)
    if shentsize != 64 or not 0 < shnum <= MAX_SECTIONS or shstrndx >= shnum:
        return None  # no sections, or extended numbering
    shdrs = read(shoff, shentsize * shnum)
    if not shdrs or len(shdrs) < shentsize * shnum:
        return None
    str_offset, str_size = struct.unpack_from("<QQ", shdrs, shstrndx * shentsize + 24)
    strtab = read(str_offset, str_size) if str_size <= MAX_STRTAB else None
    if strtab is None or len(strtab) < str_size:
        return None
    names, found = set(), None
    for i in range(shnum):
        name, kind = struct.unpack_from("<II", shdrs, i * shentsize)
        offset, size = struct.unpack_from("<QQ", shdrs, i * shentsize + 24)
        end = strtab.find(b"\0", name)
        names.add(strtab[name:end if end >= 0 else len(strtab)].decode("utf-8", "backslashreplace"))
        if kind == SHT_NOTE and found is None and size <= 4096:
            notes = read(offset, size)
            found = _find(notes) if notes else None
    return found, frozenset(names)


def _find(notes: bytes) -> str | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name_end = pos + 12 + ((namesz + 3) & ~3)
        desc_end = name_end + ((descsz + 3) & ~3)
        if ntype == NT_GNU_BUILD_ID and notes[pos + 12:pos + 12 + namesz].rstrip(b"\0") == b"GNU":
            return notes[name_end:name_end + descsz].hex()
        if desc_end <= pos:
            break
        pos = desc_end
    return None


def fd_reader(fd: int):
    """A ``read(position, size)`` over an open file descriptor."""
    import os

    def read(position: int, size: int) -> bytes | None:
        try:
            return os.pread(fd, size, position)
        except OSError:
            return None
    return read
