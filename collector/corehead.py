"""How much of an ELF core must be read for a partial core to be of use.

When the handler stops reading early (``max_core_size``, the wall-clock
budget) it keeps the part it read only if that part holds the ELF header, the
program headers and the notes: every thread's registers, the signal, the
mapped files and their build-ids. The memory comes after; what is missing of
it the analysis reports as a truncated core. Pure: bytes in, a size out.
"""

from __future__ import annotations

import struct

PT_NOTE = 4
PN_XNUM = 0xFFFF  # more program headers than e_phnum holds: the count is at the end of the file
EHDR = {1: 52, 2: 64}  # header size by ELF class (32, 64 bit)


class NotACore(ValueError):
    pass


def notes_end(head: bytes) -> int | None:
    """Bytes from the start of an ELF core to the end of its header, program
    headers and notes; None when ``head`` is too short to tell. Raises
    ``NotACore`` when ``head`` does not start an ELF file."""
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
    end = table_end
    for i in range(phnum):
        fields = struct.unpack_from(entry, head, phoff + i * phentsize)
        if fields[0] == PT_NOTE:
            end = max(end, fields[offset_at[0]] + fields[offset_at[1]])
    return end
