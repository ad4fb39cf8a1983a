"""What an analysis of one core found: frozen, JSON-round-trippable records.

Nothing here talks to gdb, files or the database; adapters build these and
the signature rules, store, CLI and web UI read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from analyzer.problems import Problem, from_text


UNAVAILABLE = "<unavailable>"  # how a field gdb could not read is shown


@dataclass(frozen=True)
class Frame:
    index: int
    pc: int | None  # None: gdb could not read it (see ``unavailable``)
    function: str | None = None  # demangled, as gdb prints it
    module: str | None = None  # path of the mapped file the pc is in
    build_id: str | None = None
    offset: int | None = None  # pc relative to the module's load base
    file: str | None = None
    line: int | None = None
    # fields gdb reported as <unavailable> or <optimized out>, or left out
    # where a frame always has one ("pc", "function", "line")
    unavailable: tuple[str, ...] = ()
    # a Python function that ran in the interpreter's eval loop here (the
    # mixed stack, ``Analysis.mixed``): function, file and line are Python's
    python: bool = False
    # a Python frame's arguments and locals (name, repr), masked; only when
    # the analysis read them (``python_locals``) and only admins see them
    locals: tuple[tuple[str, str], ...] = ()

    @property
    def module_name(self) -> str | None:
        return self.module.rsplit("/", 1)[-1] if self.module else None

    @property
    def pc_text(self) -> str:
        return UNAVAILABLE if self.pc is None else f"{self.pc:#018x}"

    def describe(self) -> str:
        """One line, like gdb's backtrace but with module+offset; a Python
        frame as Python's own traceback shows it."""
        if self.python:
            line = self.line if self.line is not None else UNAVAILABLE
            return f'#{self.index:<3} File "{self.file or UNAVAILABLE}", line {line}, in {self.function or "??"}'
        where = f" at {self.file}:{self.line if self.line is not None else UNAVAILABLE}" if self.file else ""
        mod = f" ({self.module_name}+{self.offset:#x})" if self.module and self.offset is not None else ""
        function = self.function or (UNAVAILABLE if "function" in self.unavailable else "??")
        return f"#{self.index:<3} {self.pc_text} {function}{mod}{where}"


@dataclass(frozen=True)
class Thread:
    number: int  # gdb's thread number
    lwp: int | None
    crashed: bool
    frames: tuple[Frame, ...]
    depth: int | None = None  # total frames when more exist than were kept
    name: str | None = None
    depth_is_minimum: bool = False  # unwinding stopped at the cap: at least ``depth`` frames

    @property
    def truncated(self) -> bool:
        return self.depth is not None and self.depth > len(self.frames)

    @property
    def depth_text(self) -> str:
        depth = self.depth or len(self.frames)
        return f"at least {depth:,} frames" if self.depth_is_minimum else f"{depth:,} frames"


@dataclass(frozen=True)
class Module:
    path: str
    start: int
    end: int
    build_id: str | None = None
    # "debug" (DWARF found), "symtab", "dynsym" (exported names only),
    # "none" (stripped bare) or "missing" (file not found to read)
    symbols: str = "missing"
    found_at: str | None = None  # where the file was read from (sysroot, host)


@dataclass(frozen=True)
class SignalInfo:
    number: int
    name: str
    code: int | None = None
    code_name: str | None = None
    fault_address: int | None = None  # only for a fault the kernel raised (si_code > 0)
    sender_pid: int | None = None  # only for a signal a process sent (si_code <= 0), in its pid namespace
    sender_uid: int | None = None
    sender_is_self: bool = False  # the crashed process sent it (raise, abort, kill(getpid()))
    sender_comm: str | None = None  # its name, when whoever captured the crash could still see it
    # When the program's own handler re-raised the signal, or crashed itself:
    # this is the fault the kernel handed the handler, and ``reraised`` the
    # signal that ended the process.
    reraised: "SignalInfo | None" = None

    def describe(self) -> str:
        text = self.name
        if self.code_name:
            text += f" ({self.code_name})"
        if self.fault_address is not None:
            text += f" at {self.fault_address:#x}"
        if self.sender_pid is not None:
            who = (["itself"] if self.sender_is_self else []) + (
                [self.sender_comm] if self.sender_comm and not self.sender_is_self else []) + (
                [f"uid {self.sender_uid}"] if self.sender_uid is not None else [])
            text += f" sent by pid {self.sender_pid}" + (f" ({', '.join(who)})" if who else "")
        if self.reraised is not None:
            if self.reraised.sender_pid is not None:
                text += f"; re-raised by the program's handler as {self.reraised.describe()}"
            else:
                text += f"; the program's handler then crashed: {self.reraised.describe()}"
        return text


@dataclass(frozen=True)
class CxxException:
    """A C++ exception nobody caught (``analyzer.cxxexception``)."""

    type: str  # demangled, e.g. std::out_of_range
    what: str | None = None  # for the standard classes and those derived from them

    def describe(self) -> str:
        return f"{self.type}: {self.what}" if self.what is not None else self.type


@dataclass(frozen=True)
class Instruction:
    address: int
    text: str
    function: str | None = None
    offset: int | None = None
    is_pc: bool = False


@dataclass(frozen=True)
class Recursion:
    """A cycle of frames repeated many times: the usual stack overflow."""

    cycle: tuple[str, ...]
    repeats: int
    depth: int  # total frames of the thread
    depth_is_minimum: bool = False  # deeper than analysis unwinds: at least ``depth``

    @property
    def depth_text(self) -> str:
        return f"at least {self.depth:,} frames" if self.depth_is_minimum else f"{self.depth:,} frames"


@dataclass(frozen=True)
class Context:
    """Application facts from a per-program enricher (query, version...)."""

    program: str
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return dict(self.fields).get(key)


@dataclass(frozen=True)
class PythonFrame:
    function: str  # the code object's name, as in a traceback
    file: str
    line: int | None = None
    # the first frame an eval-loop call ran (called from C); the frames
    # after it, up to the next entry, ran in that same native eval frame
    entry: bool = True
    # arguments, then locals: (name, repr as PyStack gives it), masked like
    # the environment; empty unless the analysis was asked for them
    locals: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PythonThread:
    tid: int  # the thread's LWP: what ``Thread.lwp`` matches
    frames: tuple[PythonFrame, ...]  # innermost first, like ``Thread.frames``
    holds_gil: bool = False
    gc_collecting: bool = False
    name: str | None = None


@dataclass(frozen=True)
class PythonState:
    """What PyStack read of an interpreter in the core."""

    interpreter: str  # the module that is the interpreter (python3.11, libpython3.11.so.1.0)
    version: str | None = None  # "3.11", from the interpreter's own memory
    threads: tuple[PythonThread, ...] = ()

    def thread(self, lwp: int | None) -> PythonThread | None:
        for t in self.threads:
            if lwp is not None and t.tid == lwp:
                return t
        return None


@dataclass(frozen=True)
class Analysis:
    core: str
    executable: str | None = None
    command_line: str | None = None
    pid: int | None = None
    uid: int | None = None
    signal: SignalInfo | None = None
    threads: tuple[Thread, ...] = ()
    modules: tuple[Module, ...] = ()
    libc: str | None = None  # "glibc 2.36", "musl 1.2.3", "musl"
    registers: tuple[tuple[str, str], ...] = ()
    disassembly: tuple[Instruction, ...] = ()
    abort_message: str | None = None
    assertion: str | None = None
    exception: CxxException | None = None  # an uncaught C++ exception's type and what()
    recursion: Recursion | None = None
    context: tuple[Context, ...] = ()
    # why parts are missing (truncated core, executable not found, ...)
    problems: tuple[Problem, ...] = ()
    analyzer_version: int = 1
    # "x86-64", "aarch64", "arm", ... (analyzer.arch) from the core's ELF
    # header; None in analyses stored before it was recorded
    architecture: str | None = None
    # the Python stacks of an interpreter's threads (PyStack); None: no
    # interpreter, or its stacks could not be read (a problem says why)
    python: PythonState | None = None

    def __post_init__(self):
        # callers that still pass plain strings get them coded by their wording
        if any(not isinstance(p, Problem) for p in self.problems):
            coded = tuple(p if isinstance(p, Problem) else from_text(str(p)) for p in self.problems)
            object.__setattr__(self, "problems", coded)

    @property
    def crashing_thread(self) -> Thread | None:
        for t in self.threads:
            if t.crashed:
                return t
        return self.threads[0] if self.threads else None

    @property
    def modules_without_symbols(self) -> tuple[str, ...]:
        """Modules whose internal functions cannot be named: at most their
        exported names were available."""
        return tuple(m.path for m in self.modules if m.symbols in ("dynsym", "none", "missing"))

    def module_for(self, pc: int | None) -> Module | None:
        if pc is None:
            return None
        for m in self.modules:
            if m.start <= pc < m.end:
                return m
        return None

    def mixed(self) -> "Analysis":
        """This analysis with each thread's interpreter-eval frames replaced
        by the Python frames that ran there (``analyzer.mixed``); itself
        when there are no Python stacks. For showing and for signatures:
        what is stored keeps the native frames."""
        if self.python is None:
            return self
        from analyzer.mixed import mixed_threads

        return dataclasses.replace(self, threads=mixed_threads(self.threads, self.python))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # problems become {"code", "message"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Analysis":
        return _build(cls, data)


def _build(cls, data):
    """Rebuild nested frozen dataclasses from ``asdict`` output."""
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name not in hints:
            continue  # a field from a newer version: ignore rather than fail
        kwargs[name] = _convert(cls, name, value)
    return cls(**kwargs)


_NESTED = {
    ("Analysis", "signal"): "SignalInfo",
    ("SignalInfo", "reraised"): "SignalInfo",
    ("Analysis", "threads"): ("Thread",),
    ("Analysis", "modules"): ("Module",),
    ("Analysis", "disassembly"): ("Instruction",),
    ("Analysis", "recursion"): "Recursion",
    ("Analysis", "exception"): "CxxException",
    ("Analysis", "context"): ("Context",),
    ("Thread", "frames"): ("Frame",),
    ("Analysis", "python"): "PythonState",
    ("PythonState", "threads"): ("PythonThread",),
    ("PythonThread", "frames"): ("PythonFrame",),
}


def _convert(cls, name, value):
    kind = _NESTED.get((cls.__name__, name))
    if value is None:
        return None
    if (cls.__name__, name) == ("Analysis", "problems"):
        # dicts since problems have codes, plain strings before
        return tuple(Problem.from_stored(v) for v in value)
    if kind is None:
        if isinstance(value, list):
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
        return value
    if isinstance(kind, tuple):
        target = globals()[kind[0]]
        return tuple(_build(target, v) for v in value)
    return _build(globals()[kind], value)


@dataclass(frozen=True)
class Signature:
    text: str
    frames: tuple[str, ...]
    # (frame description, why it was left out), in order
    skipped: tuple[tuple[str, str], ...] = ()
    key_frames: tuple[int, ...] = ()  # indexes into the crashing thread
    quality: float = 0.0  # share of signature frames that had symbols
    notes: tuple[str, ...] = field(default=())
    rules_version: str = ""  # Rules.version of the rules that made it; "" before versions
