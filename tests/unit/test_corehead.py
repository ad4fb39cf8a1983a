"""collector/corehead.py: where an ELF core's notes end, from its first bytes."""

import struct
from pathlib import Path

import pytest
import zstandard

from collector.corehead import NotACore, notes_end

SAMPLE = Path(__file__).resolve().parents[2] / "sample-cores" / "bundles" / "musl-memcpy" / "core.zst"


def elf64_core(phdrs: list[tuple[int, int, int]], order: str = "<") -> bytes:
    """An ELF64 core header and program headers: (p_type, p_offset, p_filesz) each."""
    ident = b"\x7fELF" + bytes([2, 1 if order == "<" else 2, 1]) + bytes(9)
    ehdr = ident + struct.pack(order + "HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
    table = b"".join(struct.pack(order + "IIQQQQQQ", t, 0, off, 0, 0, size, size, 0) for t, off, size in phdrs)
    return ehdr + table


def test_notes_end_of_a_real_core():
    with open(SAMPLE, "rb") as f:
        head = zstandard.ZstdDecompressor().stream_reader(f).read(1 << 20)
    end = notes_end(head)
    (phoff,) = struct.unpack_from("<Q", head, 32)
    phnum = struct.unpack_from("<H", head, 56)[0]
    assert end > phoff + 56 * phnum  # the notes come after the program headers
    assert notes_end(head[:end]) == end  # exactly the notes: enough
    assert notes_end(head[:phoff + 56 * phnum - 1]) is None  # the table cut: not known yet


def test_notes_end_synthetic():
    head = elf64_core([(4, 4096, 10000), (1, 16384, 1 << 30), (1, 1 << 31, 4096)])
    assert notes_end(head) == 4096 + 10000
    assert notes_end(elf64_core([(4, 4096, 500)], order=">")) == 4596
    assert notes_end(head[:40]) is None and notes_end(b"") is None
    assert notes_end(elf64_core([(1, 4096, 100)])) == 64 + 56  # no notes: the table is all


def test_notes_end_with_more_headers_than_e_phnum_holds():
    head = bytearray(elf64_core([(4, 200, 1000)]))
    struct.pack_into("<H", head, 56, 0xFFFF)  # PN_XNUM: the kernel still writes PT_NOTE first
    assert notes_end(bytes(head)) == 1200


@pytest.mark.parametrize("junk", [b"\x00" * 64, b"#!/bin/sh\n" * 10, b"\x7fELF\x09\x01" + bytes(60)])
def test_not_a_core(junk):
    with pytest.raises(NotACore):
        notes_end(junk)
