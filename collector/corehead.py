"""How much of an ELF core must be read for a partial core to be of use.

When the handler stops reading early (``max_core_size``, the wall-clock
budget) it keeps the part it read only if that part holds the ELF header, the
program headers and the notes: every thread's registers, the signal, the
mapped files and their build-ids. The memory comes after; what is missing of
it the analysis reports as a truncated core. The same notes say who sent
the fatal signal, when a process did (``signal_sender``). Pure: bytes in, a
size (or a sender) out.
"""

from __future__ import annotations

import struct

PT_NOTE = 4
NT_SIGINFO = 0x53494749  # "SIGI"
PN_XNUM = 0xFFFF  # more program headers than e_phnum holds: the count is at the end of the file
EHDR = {1: 52, 2: 64}  # header size by ELF class (32, 64 bit)


class NotACore(ValueError):
    pass


def notes_end(head: bytes) -> int | None:
    """Bytes from the start of an ELF core to the end of its header, program
    headers and notes; None when ``head`` is too short to tell. Raises
    ``NotACore`` when ``head`` does not start an ELF file."""
    found = _layout(head)
    if found is None:
        return None
    table_end, notes = found
    return max([table_end] + [offset + size for offset, size in notes])


def _layout(head: bytes) -> tuple[int, list[tuple[int, int]]] | None:
    """(end of the program header table, [(offset, size) of each PT_NOTE])."""
    if len(head) < 6:
        return None
    if head[:4] != b"\x7fELF" or head[4] not in EHDR or head[5] not in (1, 2):
        raise NotACore("not an ELF file")
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if len(head) < EHDR[head[4]]:
        return None
    if wide:
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        entry, offset_at = order + "IIQQQQ", (2, 5)  # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz
    else:
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
        entry, offset_at = order + "IIIIII", (1, 4)  # p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz
    if phentsize < struct.calcsize(entry) or phnum == 0:
        raise NotACore("no program headers")
    if phnum == PN_XNUM:
        phnum = 1  # the kernel writes the PT_NOTE header first; the real count is at the far end
    table_end = phoff + phentsize * phnum
    if len(head) < table_end:
        return None
    notes = []
    for i in range(phnum):
        fields = struct.unpack_from(entry, head, phoff + i * phentsize)
        if fields[0] == PT_NOTE:
            notes.append((fields[offset_at[0]], fields[offset_at[1]]))
    return table_end, notes


def signal_sender(head: bytes) -> tuple[int, int] | None:
    """(pid, uid) of the process that sent the fatal signal (kill, tgkill,
    sigqueue: si_code <= 0), from the core's NT_SIGINFO note, the pid as the
    crashed process's pid namespace numbers it; None for a fault the kernel
    raised, or when ``head`` does not hold the note. Little-endian cores."""
    try:
        found = _layout(head)
    except NotACore:
        return None
    if found is None or head[5] != 1:
        return None
    union = 16 if head[4] == 2 else 12  # siginfo's union follows three ints, aligned to the word size
    for offset, size in found[1]:
        at, end = offset, min(offset + size, len(head))
        while at + 12 <= end:
            namesz, descsz, kind = struct.unpack_from("<III", head, at)
            desc = at + 12 + (namesz + 3) // 4 * 4
            if desc + descsz > end:
                break
            if kind == NT_SIGINFO and descsz >= union + 8:
                signo, _errno, code = struct.unpack_from("<iii", head, desc)
                pid, uid = struct.unpack_from("<iI", head, desc + union)
                return (pid, uid) if 0 < signo < 128 and code <= 0 and pid > 0 else None
            at = desc + (descsz + 3) // 4 * 4
    return None
