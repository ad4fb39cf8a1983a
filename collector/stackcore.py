"""Which bytes of an ELF core make its stack-only core, and that core's headers.

A stack-only core is what a minidump holds, as an ELF core gdb reads like
any other: the ELF header, the program headers and every note (threads,
registers, signal, auxv, mapped files), then only

- each thread's stack, from its stack pointer (less the red zone, rounded
  down to a page) to the end of the segment that holds it (at most
  ``STACK_MAX``);
- what the program wrote of the files it mapped, the executable first:
  ``.data``, ``.bss`` and RELRO, and small anonymous writable mappings (the
  dynamic linker's own allocations, TLS), under
  ``globals_max`` bytes in all, so globals can still be read;
- the first page of each mapped ELF file the kernel dumped (build-ids) and
  the vDSO (signal frames unwind through it);
- the dynamic linker's list of loaded libraries (``struct link_map`` and the
  names), which gdb needs to find them: the nodes of libraries opened with
  dlopen() are on the heap, so ``plan`` follows the list in the crashed
  process's memory (``read``, ``/proc/PID/mem`` while the kernel dumps it)
  and keeps those bytes under extra program headers.

Every other segment keeps its program header with ``p_filesz = 0``: gdb says
the memory is not available there instead of reading zeros. The part of a
stack segment below the stack pointer loses its header (it is dead memory).

``plan(head, read=...)`` reads the core's first bytes (up to the end of its notes,
``collector.corehead``) and returns a ``StackPlan``: the new core's first
bytes and the pieces of the source core to copy after them, in the order the
source holds them, so the handler writes the stack core as it streams the
full one. Pure: bytes (and a reader of the process's memory) in, a plan out;
``StackWriter`` copies the pieces as the bytes stream past.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from collector.corehead import PN_XNUM, NotACore, notes_end

PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W = 1, 2
NT_PRSTATUS, NT_AUXV, NT_FILE = 1, 6, 0x46494C45
AT_PHDR, AT_PHNUM = 3, 5
PT_DYNAMIC, PT_PHDR = 2, 6
DT_DEBUG = 21
LINK_MAP = 40  # what gdb reads of a struct link_map (ELF64): l_addr, l_name, l_ld, l_next, l_prev
MAX_OBJECTS = 4096  # loaded objects followed, at most ...
LINK_BYTES_MAX = 1 << 20  # ... and bytes kept of them (a hostile list cannot swell the stack core)
PAGE = 4096
GLOBALS_MAX = 4 << 20
VDSO_MAX = 64 << 10
SMALL_ANON = 64 << 10  # anonymous writable mappings up to this size count as globals  # an executable mapping no file backs, at most this big: the vDSO
STACK_MAX = 16 << 20  # of one stack segment, from the stack pointer up (a main stack is 8 MiB)
OVERFLOW_REACH = 1 << 20  # a stack pointer this far below a segment (the guard gap) overflowed it

# e_machine -> (offset of the stack pointer in NT_PRSTATUS's desc, red zone) for ELF64
_SP64 = {62: (112 + 19 * 8, 128),  # x86-64: pr_reg at 112, rsp is user_regs_struct[19]
         183: (112 + 31 * 8, 0)}  # aarch64: regs[31] is sp
_SP32 = {3: (72 + 15 * 4, 0)}  # i386: pr_reg at 72, esp is [15]


class StackCoreError(NotACore):
    """The core cannot be cut down to its stacks (an unknown machine, too many
    program headers); the full core is unaffected."""


@dataclass(frozen=True)
class Segment:
    index: int  # in the program header table
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


@dataclass(frozen=True)
class Piece:
    """``size`` bytes at ``src`` in the full core go to ``dst`` in the stack core."""

    src: int
    size: int
    dst: int
    what: str  # "stack", "globals", "elf-header", "vdso"


@dataclass(frozen=True)
class StackPlan:
    header: bytes  # the stack core's first bytes: ELF header, rewritten program headers, notes
    pieces: tuple[Piece, ...]  # ordered by src (and dst)
    size: int  # the stack core's size
    threads: int
    stacks: int  # bytes of stack kept
    globals: int  # bytes of the executable's writable segments kept

    @property
    def read_until(self) -> int:
        """Bytes of the full core to read before the stack core is complete."""
        return max((p.src + p.size for p in self.pieces), default=len(self.header))


@dataclass(frozen=True)
class _Elf:
    wide: bool
    order: str
    machine: int
    phoff: int
    phentsize: int
    phnum: int


def _elf(head: bytes) -> _Elf:
    if notes_end(head) is None:
        raise NotACore("the core's header is incomplete")
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        (machine,) = struct.unpack_from(order + "H", head, 18)
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
    else:
        (machine,) = struct.unpack_from(order + "H", head, 18)
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
    if phnum == PN_XNUM:
        raise StackCoreError("more than 65,534 program headers: no stack core")
    return _Elf(wide, order, machine, phoff, phentsize, phnum)


def _phdrs(head: bytes, elf: _Elf) -> list[tuple[int, Segment]]:
    """(p_type, segment) for every program header."""
    out = []
    for i in range(elf.phnum):
        at = elf.phoff + i * elf.phentsize
        if elf.wide:
            t, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from(elf.order + "IIQQQQQQ", head, at)
        else:
            t, off, vaddr, _, filesz, memsz, flags, _ = struct.unpack_from(elf.order + "IIIIIIII", head, at)
        out.append((t, Segment(i, vaddr, memsz, off, filesz, flags)))
    return out


def _notes(head: bytes, elf: _Elf, phdrs) -> list[tuple[int, bytes]]:
    """(type, desc) of every note, in order."""
    out = []
    for t, seg in phdrs:
        if t != PT_NOTE:
            continue
        data, at = head[seg.offset:seg.offset + seg.filesz], 0
        while at + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from(elf.order + "III", data, at)
            at += 12 + ((namesz + 3) & ~3)
            out.append((ntype, bytes(data[at:at + descsz])))
            at += (descsz + 3) & ~3
    return out


def _mapped_files(desc: bytes, elf: _Elf) -> list[tuple[int, int, int, str]]:
    """NT_FILE: (start, end, file offset in pages, path) for each mapping."""
    word = "Q" if elf.wide else "I"
    size = 8 if elf.wide else 4
    if len(desc) < 2 * size:
        return []
    count, _ = struct.unpack_from(elf.order + 2 * word, desc, 0)
    table_end = 2 * size + 3 * size * count
    if count > len(desc) or table_end > len(desc):
        return []
    names = desc[table_end:].split(b"\0")
    out = []
    for i in range(count):
        start, end, pgoff = struct.unpack_from(elf.order + 3 * word, desc, 2 * size + 3 * size * i)
        name = names[i].decode("utf-8", "surrogateescape") if i < len(names) else ""
        out.append((start, end, pgoff, name))
    return out


def _auxv(desc: bytes, elf: _Elf, key: int) -> int | None:
    fmt = elf.order + ("QQ" if elf.wide else "II")
    step = struct.calcsize(fmt)
    for at in range(0, len(desc) - step + 1, step):
        k, v = struct.unpack_from(fmt, desc, at)
        if k == key:
            return v
        if k == 0:
            break
    return None


def _c_string(read, addr: int, most: int = 4096) -> int:
    """Bytes of the NUL-terminated string at ``addr``, its NUL included, at
    most ``most`` (0: unreadable). Read in pieces that never cross a page."""
    pos = addr
    while pos - addr < most:
        data = read(pos, min(256, PAGE - pos % PAGE, addr + most - pos))
        if not data:
            break
        end = data.find(b"\0")
        if end >= 0:
            return pos - addr + end + 1
        pos += len(data)
    return pos - addr


def loaded_objects(elf: _Elf, auxv: bytes, read) -> list[tuple[int, int]]:
    """(address, size) of what gdb reads to list the loaded libraries: every
    ``struct link_map`` of the dynamic linker's list and its name. Those of
    libraries opened with dlopen() (a PostgreSQL extension, a Lua module) are
    on the heap, which a stack core does not keep. ``read(addr, size)``
    returns the crashed process's bytes, or None. ELF64 only."""
    if not elf.wide:
        return []
    phdr, phnum = _auxv(auxv, elf, AT_PHDR), _auxv(auxv, elf, AT_PHNUM)
    if not phdr or not phnum or phnum > 1024:
        return []
    table = read(phdr, 56 * phnum)
    if not table or len(table) < 56 * phnum:
        return []
    bias, dynamic = 0, None
    for i in range(phnum):
        t, _, _, vaddr, _, _, memsz, _ = struct.unpack_from(elf.order + "IIQQQQQQ", table, 56 * i)
        if t == PT_PHDR:
            bias = phdr - vaddr
        elif t == PT_DYNAMIC:
            dynamic = (vaddr, memsz)
    if dynamic is None:
        return []  # a static executable: no list
    entries = read(bias + dynamic[0], min(dynamic[1], 64 << 10)) or b""
    r_debug = next((val for tag, val in struct.iter_unpack(elf.order + "QQ", entries[:len(entries) // 16 * 16])
                    if tag == DT_DEBUG), 0)
    head = read(r_debug, 16) if r_debug else None
    if not head or len(head) < 16:
        return []
    node = struct.unpack_from(elf.order + "Q", head, 8)[0]
    out, seen, kept = [], set(), 0
    while node and node not in seen and len(seen) < MAX_OBJECTS and kept < LINK_BYTES_MAX:
        seen.add(node)
        fields = read(node, LINK_MAP)
        if not fields or len(fields) < LINK_MAP:
            break
        _, name, _, following, _ = struct.unpack(elf.order + "5Q", fields)
        out.append((node, LINK_MAP))
        kept += LINK_MAP
        if name and (size := _c_string(read, name)):
            out.append((name, size))
            kept += size
        node = following
    return out


def core_reader(core) -> Callable[[int, int], bytes | None]:
    """``read(addr, size)`` over a whole core's bytes (its PT_LOAD
    segments): what ``plan`` asks of the live process, for a core on disk."""
    elf = _elf(core)
    loads = sorted((seg for t, seg in _phdrs(core, elf) if t == PT_LOAD), key=lambda s: s.vaddr)
    starts = [seg.vaddr for seg in loads]

    def read(addr: int, size: int) -> bytes | None:
        i = bisect_right(starts, addr) - 1
        if i < 0 or addr + size > loads[i].vaddr + loads[i].filesz:
            return None
        at = loads[i].offset + addr - loads[i].vaddr
        return bytes(core[at:at + size])
    return read


def stack_pointers(notes, elf: _Elf) -> list[int]:
    table = _SP64 if elf.wide else _SP32
    if elf.machine not in table:
        raise StackCoreError(f"no stack core for machine {elf.machine} (known: x86-64, aarch64, i386)")
    at, red = table[elf.machine]
    fmt = elf.order + ("Q" if elf.wide else "I")
    return [struct.unpack_from(fmt, desc, at)[0] - red
            for t, desc in notes if t == NT_PRSTATUS and len(desc) >= at + struct.calcsize(fmt)]


def _stack_range(by_addr: list[Segment], starts: list[int], sp: int) -> tuple[Segment, int] | None:
    """(segment, first address kept) of the stack ``sp`` points into; past its
    bottom (an overflow into the guard gap or page) the segment above.
    ``by_addr``: the PT_LOAD segments by address, ``starts`` their vaddrs."""
    i = bisect_right(starts, sp) - 1
    if i >= 0 and sp < by_addr[i].end and by_addr[i].filesz > 0:
        return by_addr[i], max(by_addr[i].vaddr, sp & ~(PAGE - 1))
    for seg in by_addr[i + 1:i + 3]:  # the guard page's own segment, then the stack's
        if seg.vaddr - sp <= OVERFLOW_REACH and seg.filesz > 0:
            return seg, seg.vaddr
    return None


def plan(head: bytes, globals_max: int = GLOBALS_MAX, read=None) -> StackPlan:
    """The stack core of the core that starts with ``head`` (at least up to
    the end of its notes). ``read(addr, size)``, when given, reads the
    crashed process's memory (``/proc/PID/mem`` while the kernel dumps it):
    the dynamic linker's list of libraries is followed there, and its nodes
    on the heap are kept too. Raises ``NotACore`` (or ``StackCoreError``)."""
    end = notes_end(head)
    if end is None or len(head) < end:
        raise NotACore("the core's notes are incomplete")
    elf = _elf(head)
    phdrs = _phdrs(head, elf)
    notes = _notes(head, elf, phdrs)
    loads = [seg for t, seg in phdrs if t == PT_LOAD]
    files: list[tuple[int, int, int, str]] = []
    phdr_addr, auxv = None, b""
    for t, desc in notes:
        if t == NT_FILE and not files:
            files = _mapped_files(desc, elf)
        elif t == NT_AUXV and phdr_addr is None:
            phdr_addr, auxv = _auxv(desc, elf, AT_PHDR), desc
    sps = stack_pointers(notes, elf)

    by_addr = sorted(loads, key=lambda s: s.vaddr)
    starts = [s.vaddr for s in by_addr]
    keep: dict[int, tuple[int, str]] = {}  # segment index -> (first address kept, what)
    for sp in sps:
        found = _stack_range(by_addr, starts, sp)
        if found is None:
            continue  # a stack pointer into nothing (a pivoted or corrupt stack): its registers remain
        seg, start = found
        if seg.index in keep:
            start = min(start, keep[seg.index][0])
        keep[seg.index] = (start, "stack")

    exe = None
    if phdr_addr is not None:
        exe = next((name for s, e, _, name in files if s <= phdr_addr < e), None)
    if exe is None and files:
        exe = files[0][3]
    files.sort()
    file_at = [s for s, _, _, _ in files]
    names = {}  # segment index -> the file it maps, or None
    for seg in loads:
        i = bisect_left(file_at, seg.end) - 1  # the last mapping that starts below the segment's end
        names[seg.index] = files[i][3] if i >= 0 and files[i][1] > seg.vaddr else None
    file_starts = {s for s, _, pgoff, _ in files if pgoff == 0}
    # what the program wrote of the files it mapped (.data, RELRO; the ELF
    # header page aside), then .bss: the anonymous mapping right after; the
    # executable's first, then the libraries' (the dynamic linker's list of
    # them, which gdb needs to find them, is in ld.so's), then small anonymous
    # writable mappings (the dynamic linker's own allocations, TLS): ``globals``
    ranked: list[tuple[int, Segment]] = []
    owner, previous_end = None, None
    for seg in by_addr:
        name = names[seg.index]
        if name is not None and seg.vaddr not in file_starts:
            owner = name
        elif name is None and owner is not None and seg.flags & PF_W and seg.vaddr == previous_end:
            pass  # .bss of ``owner``
        else:
            owner = None
        previous_end = seg.end
        if seg.index in keep or seg.filesz == 0:
            continue
        if owner is not None:
            ranked.append((0 if owner == exe else 1, seg))
        elif name is None and seg.flags & PF_W and seg.filesz <= SMALL_ANON:
            ranked.append((2, seg))
        elif seg.vaddr in file_starts and seg.filesz <= PAGE:
            keep[seg.index] = (seg.vaddr, "elf-header")
        elif name is None and seg.flags & PF_X and not seg.flags & PF_W and seg.filesz <= VDSO_MAX:
            keep[seg.index] = (seg.vaddr, "vdso")
    budget = globals_max
    for _, seg in sorted(ranked, key=lambda r: (r[0], r[1].vaddr)):
        if seg.filesz <= budget:
            keep[seg.index] = (seg.vaddr, "globals")
            budget -= seg.filesz

    # the library list's nodes in segments not kept (the heap): extra program headers over them
    extras: list[tuple[Segment, int, int]] = []  # (segment, address, size)
    if read is not None:
        def dumped(addr: int, size: int) -> bytes | None:
            """Only what the kernel dumps (and so reads) too: never a page
            of a file it leaves out (one on a FUSE server that never answers)."""
            i = bisect_right(starts, addr) - 1
            if i < 0 or addr + size > by_addr[i].vaddr + by_addr[i].filesz:
                return None
            return read(addr, size)

        for addr, size in _merged(loaded_objects(elf, auxv, dumped)):
            i = bisect_right(starts, addr) - 1
            if i < 0:
                continue
            seg = by_addr[i]
            if seg.index not in keep and addr + size <= seg.vaddr + seg.filesz:
                extras.append((seg, addr, size))
        if elf.phnum + len(extras) >= PN_XNUM:
            extras = []
    phnum = elf.phnum + len(extras)

    # the new header: ELF header, program headers (the extras last), the notes moved after them
    header = bytearray(head[:elf.phoff + elf.phnum * elf.phentsize])
    header += bytes(len(extras) * elf.phentsize)
    struct.pack_into(elf.order + "H", header, 56 if elf.wide else 44, phnum)
    for t, seg in phdrs:
        if t == PT_NOTE:
            header += bytes(-len(header) % 8)
            _rewrite(header, elf, seg.index, 0, 0, len(header), seg.filesz, memsz_too=False)
            header += head[seg.offset:seg.offset + seg.filesz]

    pos = (len(header) + PAGE - 1) & ~(PAGE - 1)
    wanted = []  # (src, size, phdr index, vaddr, memsz, what)
    for seg in loads:
        if seg.index in keep:
            start, what = keep[seg.index]
            cut = start - seg.vaddr
            size = max(0, seg.filesz - cut)
            if what == "stack":
                size = min(size, STACK_MAX)  # a "stack" in a huge mapping (a heap-allocated one)
            wanted.append((seg.offset + cut, size, seg.index, start, seg.end - start, what))
    for n, (seg, addr, size) in enumerate(extras):
        wanted.append((seg.offset + addr - seg.vaddr, size, elf.phnum + n, addr, size, "link-map"))
    pieces = []
    for src, size, index, vaddr, memsz, what in sorted(wanted):
        pieces.append(Piece(src, size, pos, what))
        _rewrite(header, elf, index, vaddr, memsz, pos, size, new_load=index >= elf.phnum)
        pos += size
        pos = (pos + PAGE - 1) & ~(PAGE - 1) if what != "link-map" else (pos + 7) & ~7
    total = pieces[-1].dst + pieces[-1].size if pieces else len(header)
    for seg in loads:
        if seg.index not in keep:
            _rewrite(header, elf, seg.index, seg.vaddr, seg.memsz, total, 0)
    return StackPlan(header=bytes(header), pieces=tuple(pieces), size=total, threads=len(sps),
                     stacks=sum(p.size for p in pieces if p.what == "stack"),
                     globals=sum(p.size for p in pieces if p.what == "globals"))


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for addr, size in sorted(ranges):
        if out and addr <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], addr + size - out[-1][0])
        else:
            out.append([addr, size])
    return [(a, n) for a, n in out]


def _rewrite(header: bytearray, elf: _Elf, index: int, vaddr: int, memsz: int, offset: int, filesz: int,
             memsz_too: bool = True, new_load: bool = False) -> None:
    """Set one program header's offset, vaddr, filesz (and memsz); a new one
    becomes a readable PT_LOAD."""
    at = elf.phoff + index * elf.phentsize
    if new_load:
        if elf.wide:
            struct.pack_into(elf.order + "IIQQQQQQ", header, at, PT_LOAD, 6, 0, 0, 0, 0, 0, 1)
        else:
            struct.pack_into(elf.order + "IIIIIIII", header, at, PT_LOAD, 0, 0, 0, 0, 0, 6, 1)
    if elf.wide:
        struct.pack_into(elf.order + "QQQQ", header, at + 8, offset, vaddr, 0, filesz)
        if memsz_too:
            struct.pack_into(elf.order + "Q", header, at + 40, memsz)
    else:
        struct.pack_into(elf.order + "IIII", header, at + 4, offset, vaddr, 0, filesz)
        if memsz_too:
            struct.pack_into(elf.order + "I", header, at + 20, memsz)


class StackWriter:
    """Feeds a ``StackPlan``'s pieces to ``out`` (a file-like ``write``) from
    the full core's bytes as they stream past, in one pass."""

    def __init__(self, stack_plan: StackPlan, out) -> None:
        self.plan = stack_plan
        self.out = out
        self.next = 0  # first piece not yet complete
        out.write(stack_plan.header)
        self.written = len(stack_plan.header)

    @property
    def complete(self) -> bool:
        return self.next >= len(self.plan.pieces)

    def feed(self, offset: int, data) -> None:
        """``data`` holds the full core's bytes from ``offset``; called with
        consecutive ranges."""
        pieces, end = self.plan.pieces, offset + len(data)
        while self.next < len(pieces):
            piece = pieces[self.next]
            lo, hi = max(offset, piece.src), min(end, piece.src + piece.size)
            if lo >= end:
                return
            if hi > lo:
                at = piece.dst + (lo - piece.src)
                if at > self.written:  # the alignment gap before a piece
                    self.out.write(bytes(at - self.written))
                    self.written = at
                if at == self.written:
                    self.out.write(data[lo - offset:hi - offset])
                    self.written += hi - lo
            if piece.src + piece.size > end:
                return
            self.next += 1
