"""The C++ exception nobody caught: its type and, for the standard exception
classes, its ``what()`` text, read from the exception object in the core's
memory. A core cannot run code, so nothing here calls a function: this
follows the Itanium C++ ABI's layout as libstdc++ builds it on x86-64.

When no handler is found, libstdc++'s ``__cxa_throw`` marks the exception
caught and calls ``std::terminate``, so the thread's ``__cxa_eh_globals``
(thread-local storage of libstdc++) points at its ``__cxa_exception``
header, and the thrown object follows that header.

``read`` gives the memory; ``disassemble`` and ``symbol_at`` and
``demangle`` answer from gdb: this module only decides what to read.
"""

from __future__ import annotations

import re
from typing import Callable

from analyzer.model import CxxException

HEADER_SIZE = 0x70  # sizeof(__cxa_exception): the thrown object follows it
EXCEPTION_CLASS = 0x50  # offset of unwindHeader.exception_class; bit 0 set: a dependent exception
MAX_BASES = 16

# The standard classes whose what() is the message they were built with,
# kept in a string right after the vtable pointer (libstdc++'s __cow_string).
MESSAGE_BASES = frozenset({"St11logic_error", "St13runtime_error"})
# The standard classes whose what() is a fixed text.
FIXED_WHAT = {
    "St9bad_alloc": "std::bad_alloc",
    "St20bad_array_new_length": "std::bad_array_new_length",
    "St8bad_cast": "std::bad_cast",
    "St10bad_typeid": "std::bad_typeid",
    "St13bad_exception": "std::bad_exception",
    "St17bad_function_call": "bad_function_call",
    "St9exception": "std::exception",
}
THROW_FRAMES = ("__cxa_throw", "__cxa_rethrow", "std::terminate()", "__cxxabiv1::__terminate")

_TLS_INDEX = re.compile(r"lea\s+0x[0-9a-f]+\(%rip\),%rdi\s+#\s+(0x[0-9a-f]+)")
_ADD_RAX = re.compile(r"add\s+\$(0x[0-9a-f]+),%rax")


def unwinding(functions) -> bool:
    """Whether a crashing thread's frames show a C++ throw that ended in terminate."""
    return any(f and f.startswith(THROW_FRAMES) for f in functions)


def tls_location(disassembly: str) -> tuple[int, int] | None:
    """(address of the ``tls_index`` that ``__cxa_get_globals`` passes to
    ``__tls_get_addr``, constant it adds to the answer), from gdb's
    disassembly of it; None when it is not built that way."""
    index = _TLS_INDEX.search(disassembly)
    if index is None or "__tls_get_addr" not in disassembly:
        return None
    add = _ADD_RAX.search(disassembly)
    return int(index.group(1), 16), int(add.group(1), 16) if add else 0


def uncaught(read_word: Callable[[int], int | None], read_byte: Callable[[int], int | None],
             read_string: Callable[[int], str | None], fs_base: int, tls: tuple[int, int],
             symbol_at: Callable[[int], str], demangle: Callable[[str], str | None]) -> CxxException | None:
    """The exception ``__cxa_eh_globals.caughtExceptions`` points at, for
    the thread whose fs base is ``fs_base`` (x86-64, glibc's dtv)."""
    index, extra = tls
    module, offset = read_word(index), read_word(index + 8)
    dtv = read_word(fs_base + 8)  # tcbhead_t: tcb, then dtv
    if None in (module, offset, dtv) or not 0 < module < 1 << 16:
        return None
    block = read_word(dtv + 16 * module)  # dtv_t is {void *val; void *to_free}
    if not block:
        return None
    header = read_word(block + offset + extra)  # caughtExceptions
    if not header:
        return None
    kind = read_byte(header + EXCEPTION_CLASS)
    if kind is None:
        return None
    if kind & 1:  # a dependent exception (std::rethrow_exception): its primary's object
        primary = read_word(header)
        if not primary:
            return None
        header = primary - HEADER_SIZE
    type_info = read_word(header)
    if not type_info:
        return None
    mangled = _type_name(read_word, read_string, type_info)
    if not mangled:
        return None
    name = demangle(mangled) or mangled
    return CxxException(type=name, what=_what(read_word, read_string, symbol_at, type_info,
                                              header + HEADER_SIZE))


def _type_name(read_word, read_string, type_info: int) -> str | None:
    pointer = read_word(type_info + 8)  # std::type_info: vtable pointer, then the mangled name
    name = read_string(pointer) if pointer else None
    return name.lstrip("*") if name else None


def _what(read_word, read_string, symbol_at, type_info: int, thrown: int) -> str | None:
    """Walk the single-inheritance chain of type_infos up to a standard class."""
    current = type_info
    for _ in range(MAX_BASES):
        mangled = _type_name(read_word, read_string, current)
        if mangled in MESSAGE_BASES:
            message = read_word(thrown + 8)
            return read_string(message) if message else None
        if mangled in FIXED_WHAT:
            return FIXED_WHAT[mangled]
        vtable = read_word(current)
        if not vtable or "__si_class_type_info" not in symbol_at(vtable):
            return None  # no base, or several (its layout is not followed)
        current = read_word(current + 16)  # __si_class_type_info::__base_type
        if not current:
            return None
    return None
