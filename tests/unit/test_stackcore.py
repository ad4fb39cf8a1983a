"""collector/stackcore.py on a real core (the committed musl sample): which
bytes are kept, the rewritten program headers, the writer fed in pieces."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
import zstandard

from collector.corehead import NotACore, notes_end
from collector.stackcore import PAGE, PT_LOAD, StackCoreError, StackWriter, plan

SAMPLE = Path(__file__).resolve().parents[2] / "sample-cores" / "bundles" / "musl-memcpy" / "core.zst"


@pytest.fixture(scope="module")
def core() -> bytes:
    with open(SAMPLE, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def loads(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(offset, vaddr, filesz, memsz, flags) of each PT_LOAD of an ELF64 core."""
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phnum = struct.unpack_from("<H", data, 56)[0]
    out = []
    for i in range(phnum):
        t, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i)
        if t == PT_LOAD:
            out.append((off, vaddr, filesz, memsz, flags))
    return out


def written(core: bytes, chunk: int) -> bytes:
    out = io.BytesIO()
    writer = StackWriter(plan(core[:notes_end(core)]), out)
    for at in range(0, len(core), chunk):
        writer.feed(at, memoryview(core)[at:at + chunk])
    assert writer.complete
    return out.getvalue()


def test_the_stack_core_of_a_real_core(core):
    end = notes_end(core)
    p = plan(core[:end])
    assert p.threads == 1 and p.header[:4] == b"\x7fELF" and len(p.header) == end
    stack = written(core, 1 << 20)
    assert len(stack) == p.size < len(core) // 2
    (phoff,) = struct.unpack_from("<Q", core, 32)
    table = phoff + 56 * struct.unpack_from("<H", core, 56)[0]
    assert stack[:phoff] == core[:phoff] and stack[table:end] == core[table:end]  # the header and notes as they were
    old, new = loads(core), loads(stack)
    assert len(old) == len(new)
    kept = [(o, n) for o, n in zip(old, new) if n[2]]
    assert {what for what in (piece.what for piece in p.pieces)} >= {"stack", "globals"}
    for o, n in kept:  # each kept piece: the same bytes at the same addresses
        assert n[0] % PAGE == 0 and n[1] + n[3] == o[1] + o[3]
        cut = n[1] - o[1]
        assert stack[n[0]:n[0] + n[2]] == core[o[0] + cut:o[0] + cut + n[2]]
    for o, n in zip(old, new):
        if not n[2]:  # the rest: its header, no bytes
            assert (n[1], n[3]) == (o[1], o[3])
    assert sum(n[2] for n in new) == p.stacks + p.globals + sum(x.size for x in p.pieces
                                                                if x.what not in ("stack", "globals"))


def test_the_stack_starts_at_the_stack_pointer_page(core):
    p = plan(core[:notes_end(core)])
    (stack,) = [x for x in p.pieces if x.what == "stack"]
    old = next(o for o in loads(core) if o[0] <= stack.src < o[0] + o[2])
    assert stack.src + stack.size == old[0] + old[2]  # to the top of the stack's segment


@pytest.mark.parametrize("chunk", [997, 4095, 65536, 1 << 30])
def test_fed_in_any_pieces_the_same_bytes(core, chunk):
    assert written(core, chunk) == written(core, 1 << 20)


def test_unknown_machine_and_incomplete_notes(core):
    end = notes_end(core)
    with pytest.raises(NotACore):
        plan(core[:end - 1])
    odd = bytearray(core[:end])
    struct.pack_into("<H", odd, 18, 40)  # EM_ARM
    with pytest.raises(StackCoreError, match="machine 40"):
        plan(bytes(odd))
    many = bytearray(core[:end])
    struct.pack_into("<H", many, 56, 0xFFFF)
    with pytest.raises(StackCoreError, match="program headers"):
        plan(bytes(many))


class Memory:
    """A process's memory as address -> bytes, for ``loaded_objects``'s ``read``."""

    def __init__(self):
        self.blocks: dict[int, bytes] = {}

    def put(self, addr: int, data: bytes) -> None:
        self.blocks[addr] = data

    def read(self, addr: int, size: int) -> bytes | None:
        for start, data in self.blocks.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start:addr - start + size]
        return None


def dynamic_process(nodes: list[tuple[int, int, int]], names: dict[int, bytes]) -> tuple[Memory, bytes]:
    """Memory with the program headers, .dynamic's DT_DEBUG, r_debug and the
    given link_map nodes (address, name address, next); and the auxv."""
    mem = Memory()
    phdrs = struct.pack("<IIQQQQQQ", 6, 4, 0, 0x1000, 0, 112, 112, 8) + \
        struct.pack("<IIQQQQQQ", 2, 6, 0, 0x2000, 0, 32, 32, 8)
    mem.put(0x1000, phdrs)
    mem.put(0x2000, struct.pack("<QQQQ", 21, 0x3000, 0, 0))  # DT_DEBUG -> r_debug
    mem.put(0x3000, struct.pack("<QQ", 1, nodes[0][0] if nodes else 0))
    for addr, name, following in nodes:
        mem.put(addr, struct.pack("<5Q", 0, name, 0, following, 0))
    for addr, text in names.items():
        mem.put(addr, text)
    auxv = struct.pack("<QQQQQQ", 3, 0x1000, 5, 2, 0, 0)
    return mem, auxv


def elf64():
    from collector.stackcore import _Elf

    return _Elf(True, "<", 62, 64, 56, 0)


def test_library_list_followed_once_and_bounded():
    from collector.stackcore import LINK_BYTES_MAX, loaded_objects

    mem, auxv = dynamic_process([(0x4000, 0x5000, 0x4100), (0x4100, 0, 0x4000)], {0x5000: b"/lib/x.so\0".ljust(4096, b"j")})
    assert loaded_objects(elf64(), auxv, mem.read) == [(0x4000, 40), (0x5000, 10), (0x4100, 40)]  # a cycle: once
    # a forged list of 4,000 nodes, each named by 4 KiB: at most LINK_BYTES_MAX kept
    nodes = [(0x100000 + 64 * i, 0x800000 + 4096 * i, 0x100000 + 64 * (i + 1)) for i in range(4000)]
    mem, auxv = dynamic_process(nodes, {0x800000: b"a" * (4096 * 4000)})
    found = loaded_objects(elf64(), auxv, mem.read)
    assert LINK_BYTES_MAX <= sum(size for _, size in found) <= LINK_BYTES_MAX + 4096 + 40
    mem, auxv = dynamic_process([], {})
    assert loaded_objects(elf64(), auxv, mem.read) == []  # r_map 0: nothing loaded yet
    assert loaded_objects(elf64(), auxv, lambda addr, size: None) == []  # nothing readable
