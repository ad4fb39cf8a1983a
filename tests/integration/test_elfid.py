"""The struct-only ELF reader agrees with pyelftools on real files, and
turns hostile headers into None (pyelftools then decides), never an error."""

from __future__ import annotations

import glob
import random
import struct
from pathlib import Path

from analyzer.elfid import section_facts
from analyzer.elfinfo import facts_by_pyelftools, elf_facts


def _reader(data: bytes):
    return lambda position, size: data[position:position + size]


def _real_files() -> list[Path]:
    files = [Path("/usr/bin/gdb"), Path("/bin/ls")]
    files += [Path(p) for p in sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libc.so.6"))]
    files += [Path(p) for p in sorted(glob.glob("/usr/lib/debug/.build-id/*/*.debug"))[:20]]
    return [f for f in files if f.is_file()]


def test_agrees_with_pyelftools_on_real_files():
    files = _real_files()
    assert len(files) >= 5, files  # gdb, ls, libc and libc6-dbg's debug files are installed by make test
    for path in files:
        data = path.read_bytes()
        fast = section_facts(_reader(data))
        with open(path, "rb") as f:
            slow = facts_by_pyelftools(f)
        assert fast is not None, path
        assert fast == (slow[0], frozenset(slow[1])), path
        with open(path, "rb") as f:
            assert elf_facts(f).build_id == slow[0]


def test_hostile_headers_give_none():
    data = bytearray(Path("/bin/ls").read_bytes())
    for offset, fmt, value in ((40, "<Q", 1 << 62),  # section headers far beyond the file
                               (58, "<H", 63),  # a section header size that is not 64
                               (60, "<H", 0),  # no sections
                               (62, "<H", 0xFFFF)):  # string table index out of range
        bad = bytearray(data)
        struct.pack_into(fmt, bad, offset, value)
        assert section_facts(_reader(bytes(bad))) is None, (offset, value)
    assert section_facts(_reader(b"")) is None
    assert section_facts(_reader(b"\x7fELF\x01\x01" + bytes(58))) is None  # 32-bit: pyelftools' job
    (shoff,) = struct.unpack_from("<Q", data, 40)
    headers = list(range(64)) + list(range(shoff, len(data)))  # the ELF header and the section headers
    rng = random.Random(7)
    for _ in range(300):  # random damage to the headers never raises
        bad = bytearray(data)
        for _ in range(8):
            bad[rng.choice(headers)] = rng.randrange(256)
        result = section_facts(_reader(bytes(bad)))
        assert result is None or isinstance(result[1], frozenset)
