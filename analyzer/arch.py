"""Which machine a core (or any ELF file) was made on, from its ELF header.

``architecture(header)`` reads ``EI_CLASS``, ``EI_DATA`` and ``e_machine``
from the first 20 bytes and returns an ``Arch``: its name as gdb and uname
call it, its word size, the registers worth showing for a crash and whether
the host's own gdb reads it (``native``). Pure: the caller reads the bytes.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

EM_386, EM_ARM, EM_X86_64, EM_AARCH64, EM_RISCV = 3, 40, 62, 183, 243


@dataclass(frozen=True)
class Arch:
    name: str  # "x86-64", "aarch64", "arm", "i386", "riscv64", or "machine-<n>"
    bits: int  # 32 or 64
    little_endian: bool = True
    registers: tuple[str, ...] = field(default=(), repr=False)  # shown for the crashing frame, in this order; () = gdb's first ones

    @property
    def native(self) -> bool:
        """Whether a gdb built for this host reads this architecture."""
        return self.name == host_arch()


_X86_64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{i}" for i in range(8, 16)),
           "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs")
_I386 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs")
# gdb calls r13-r15 sp, lr and pc on 32-bit ARM; x30 stays x30 (the link register)
_AARCH64 = (*(f"x{i}" for i in range(31)), "sp", "pc", "cpsr")
_ARM = (*(f"r{i}" for i in range(13)), "sp", "lr", "pc", "cpsr")
_RISCV = ("pc", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1", *(f"a{i}" for i in range(8)))

_MACHINES = {
    (EM_X86_64, 64): ("x86-64", _X86_64),
    (EM_AARCH64, 64): ("aarch64", _AARCH64),
    (EM_ARM, 32): ("arm", _ARM),
    (EM_386, 32): ("i386", _I386),
    (EM_RISCV, 64): ("riscv64", _RISCV),
}
_UNAME = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "aarch64", "arm64": "aarch64",
          "armv7l": "arm", "armv6l": "arm", "armv8l": "arm", "i686": "i386", "i386": "i386",
          "riscv64": "riscv64"}


class NotELF(ValueError):
    pass


def architecture(header: bytes) -> Arch:
    """The architecture named by an ELF header (at least its first 20 bytes)."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise NotELF("not an ELF file")
    ei_class, ei_data = header[4], header[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise NotELF(f"unknown ELF class {ei_class} or data encoding {ei_data}")
    bits = 32 if ei_class == 1 else 64
    little = ei_data == 1
    machine = int.from_bytes(header[18:20], "little" if little else "big")
    name, registers = _MACHINES.get((machine, bits), (f"machine-{machine}", ()))
    return Arch(name, bits, little, registers)


def host_arch() -> str:
    machine = platform.machine().lower()
    return _UNAME.get(machine, machine)
