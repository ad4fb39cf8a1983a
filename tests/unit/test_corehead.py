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


def _note(kind: int, desc: bytes, name: bytes = b"CORE\0") -> bytes:
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), kind) + pad(name) + pad(desc)


def _siginfo(signo: int, code: int, pid: int, uid: int) -> bytes:
    return struct.pack("<iiii", signo, 0, code, 0) + struct.pack("<iI", pid, uid) + bytes(104)


def test_signal_sender_from_the_siginfo_note():
    from collector.corehead import NT_SIGINFO, signal_sender

    def core(*notes: bytes) -> bytes:
        body = b"".join(notes)
        return elf64_core([(4, 120, len(body))]) + body

    prstatus = _note(1, bytes(336))
    assert signal_sender(core(prstatus, _note(NT_SIGINFO, _siginfo(11, 0, 4242, 1000)))) == (4242, 1000)  # SI_USER
    assert signal_sender(core(_note(NT_SIGINFO, _siginfo(11, -6, 7, 0)))) == (7, 0)  # SI_TKILL
    assert signal_sender(core(_note(NT_SIGINFO, _siginfo(11, 1, 0x3f17, 0)))) is None  # SEGV_MAPERR: the kernel's
    whole = core(prstatus, _note(NT_SIGINFO, _siginfo(6, -1, 9, 0)))
    assert signal_sender(whole) == (9, 0)
    assert signal_sender(whole[:-20]) is None  # the note cut short
    assert signal_sender(b"not a core at all") is None
    # a note whose sizes point past the end: the walk stops
    assert signal_sender(core(struct.pack("<III", 0xFFFFFFF0, 8, NT_SIGINFO) + bytes(16))) is None


def test_signal_sender_of_a_real_fault_is_nobody():
    from collector.corehead import signal_sender

    with open(SAMPLE, "rb") as f:
        head = zstandard.ZstdDecompressor().stream_reader(f).read(1 << 20)
    assert signal_sender(head[:notes_end(head)]) is None  # a SIGSEGV the kernel raised
