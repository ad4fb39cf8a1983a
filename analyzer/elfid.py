"""GNU build-ids from ELF images, with nothing but struct: the pipe handler
must stay light, and the analyzer reads the same notes from core memory.

``build_id(read, base, in_file)``: ``read(position, size) -> bytes | None``
reads the image; ``in_file`` says whether positions are file offsets (an
ELF file) or virtual addresses with the image loaded at ``base`` (memory).
"""

from __future__ import annotations

import struct

PT_NOTE = 4
NT_GNU_BUILD_ID = 3
ET_DYN = 3


def build_id(read, base: int = 0, in_file: bool = True) -> str | None:
    ehdr = read(base, 64)
    if not ehdr or len(ehdr) < 64 or ehdr[:4] != b"\x7fELF" or ehdr[4] != 2 or ehdr[5] != 1:
        return None  # only 64-bit little-endian images
    (e_type,) = struct.unpack_from("<H", ehdr, 16)
    (phoff,) = struct.unpack_from("<Q", ehdr, 32)
    phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
    if phnum > 64 or phentsize != 56:
        return None
    phdrs = read(base + phoff, phentsize * phnum)
    if not phdrs or len(phdrs) < phentsize * phnum:
        return None
    # in memory, ET_DYN images are relative to the load base, ET_EXEC absolute
    bias = base if e_type == ET_DYN or in_file else 0
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", phdrs, i * phentsize)
        if p_type != PT_NOTE or filesz > 4096:
            continue
        notes = read(bias + (offset if in_file else vaddr), filesz)
        if notes:
            found = _find(notes)
            if found:
                return found
    return None


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
