"""Why parts of an analysis are missing: a fixed code beside a readable message.

Grouping and the application test the code; people read the message, which
may be reworded freely. Analyses stored before codes existed hold plain
strings: ``from_text`` recognises them by the wording they were written with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRUNCATED_CORE = "truncated_core"  # the core file was cut short
NOT_A_CORE = "not_a_core"  # not an ELF core file at all
UNREADABLE_CORE = "unreadable_core"  # the core could not be opened or read
MISSING_EXECUTABLE = "missing_executable"  # the crashed program's file was not found
WRONG_BUILD = "wrong_build"  # a module found on disk has another build-id than the crashed one
UNVERIFIED_MODULE = "unverified_module"  # a host file the core records no build-id for: not used
GDB_TIMEOUT = "gdb_timeout"
GDB_FAILED = "gdb_failed"
STACK_TOO_DEEP = "stack_too_deep"  # unwinding stopped at the depth cap
NO_CODE_AT_PC = "no_code_at_pc"  # nothing to disassemble at the crashing pc
ENRICHER_FAILED = "enricher_failed"
CORE_NOT_KEPT = "core_not_kept"  # metadata only: the collector dropped the core
FOREIGN_ARCH = "foreign_arch"  # a core of another architecture and no gdb-multiarch to read it
PYTHON_UNREADABLE = "python_unreadable"  # an interpreter whose Python stacks PyStack could not read
SYMBOLS_UNAVAILABLE = "symbols_unavailable"  # a symbol server could not be used (time limit, garbage)
UNKNOWN = "unknown"  # an old stored string that matched no known wording

# The readable words a frameless crash's group shows for each code. These are
# part of the signature: changing one renames groups, so bump RULES_CODE_VERSION.
LABELS = {
    TRUNCATED_CORE: "core is truncated",
    NOT_A_CORE: "not a core dump",
    UNREADABLE_CORE: "cannot read core",
    MISSING_EXECUTABLE: "executable not found",
    WRONG_BUILD: "not the build that crashed",
    UNVERIFIED_MODULE: "host file not verifiable",
    GDB_TIMEOUT: "gdb timed out",
    GDB_FAILED: "gdb failed",
    STACK_TOO_DEEP: "stack too deep",
    NO_CODE_AT_PC: "no code at pc",
    ENRICHER_FAILED: "enricher failed",
    CORE_NOT_KEPT: "core not kept",
    FOREIGN_ARCH: "no gdb for this architecture",
    PYTHON_UNREADABLE: "python stacks unreadable",
    SYMBOLS_UNAVAILABLE: "symbols unavailable",
}
CODES = frozenset(LABELS) | {UNKNOWN}


@dataclass(frozen=True)
class Problem(str):
    """One problem. It is also a ``str`` equal to its message, only so that
    callers written when problems were plain strings (``startswith``, ``in``,
    ``json.dumps``) keep working until they read ``code``."""

    code: str
    message: str

    def __new__(cls, code: str, message: str):
        return super().__new__(cls, message)

    def __getnewargs__(self):  # copy and pickle rebuild through __new__
        return (self.code, self.message)

    def __str__(self) -> str:
        return self.message

    def __ne__(self, other):  # str's own __ne__ would ignore the code
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    @property
    def label(self) -> str:
        return LABELS.get(self.code, self.code)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_stored(cls, value: str | dict) -> "Problem":
        """A stored problem: ``{"code", "message"}`` or an old plain string."""
        if isinstance(value, dict):
            return cls(str(value.get("code") or UNKNOWN), str(value.get("message", "")))
        return from_text(str(value))


# The wording analyzer versions before codes wrote, first match wins.
_LEGACY = (
    (re.compile(r"core is truncated"), TRUNCATED_CORE),
    (re.compile(r"not a core dump"), NOT_A_CORE),
    (re.compile(r"cannot read core"), UNREADABLE_CORE),
    (re.compile(r"core not kept"), CORE_NOT_KEPT),
    (re.compile(r"gdb failed"), GDB_FAILED),
    (re.compile(r"gdb did not finish within|gdb timed out"), GDB_TIMEOUT),
    (re.compile(r"executable .* not found"), MISSING_EXECUTABLE),
    (re.compile(r".* is not the build that crashed"), WRONG_BUILD),
    (re.compile(r"thread \S+ is deeper than"), STACK_TOO_DEEP),
    (re.compile(r"no code readable at pc"), NO_CODE_AT_PC),
    (re.compile(r"\S+ enricher failed"), ENRICHER_FAILED),
)


def from_text(message: str) -> Problem:
    for pattern, code in _LEGACY:
        if pattern.match(message):
            return Problem(code, message)
    return Problem(UNKNOWN, message)
