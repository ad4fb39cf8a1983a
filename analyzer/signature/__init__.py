"""Crash signatures: which bug is this? ``generate(analysis) -> Signature``.

An ordered pipeline of small pure rules over the crashing thread's frames,
after Socorro's signature generator. Each rule takes the frames left so far
and returns the frames it keeps plus why it dropped the others, so the web
UI can show how a signature was made. The frame lists are plain text files
(``lists/``), extendable by users with files of the same names under
``<data-dir>/rules/``.

The rule set has a version (``Rules.version``, copied into every
``Signature``): a hash of the effective lists and of ``RULES_CODE_VERSION``,
so a stored crash says which rules grouped it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from analyzer.model import Analysis, Frame, Signature
from analyzer.problems import UNKNOWN, Problem
from analyzer.python import interpreter_of
from analyzer.signature.names import normalize_function, python_name
from analyzer.stack import collapse_repeats

LISTS = Path(__file__).with_name("lists")
SIGNATURE_FRAMES = 3  # program frames after any prefix
KEY_FRAMES = 3
SEPARATOR = " | "
LIST_NAMES = ("skip.txt", "prefix.txt", "system_modules.txt", "python_skip.txt", "python_library.txt")
# Bump when the pipeline below changes what a signature is (a rule, its
# order, SIGNATURE_FRAMES, names.py, the frameless labels in problems.py):
# the lists' hash cannot see code.
# 2: aarch64 and arm ifunc names; library prefix frames are never key frames
# 3: a stack overflow's signature ends with its cycle
# 4: Python crashes: the mixed stack, interpreter machinery skipped, Python
#    frames up to the program's own function
RULES_CODE_VERSION = 4


@dataclass(frozen=True)
class Rules:
    skip: tuple[re.Pattern, ...]
    prefix: tuple[re.Pattern, ...]
    system_modules: tuple[re.Pattern, ...]
    python_skip: tuple[re.Pattern, ...] = ()
    python_library: tuple[re.Pattern, ...] = ()  # matched at the start of a path, not in full
    version: str = ""  # "<RULES_CODE_VERSION>-<hash of the lists>"


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a list file."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def rules_version(lists: dict[str, list[str]]) -> str:
    """Short and stable: the same lines (comments and blank lines aside)
    and the same code give the same version on every host."""
    digest = hashlib.sha256(f"rules-code {RULES_CODE_VERSION}\n".encode())
    for name in LIST_NAMES:
        body = "\n".join(lists[name])
        digest.update(f"{name}\0{body}\0".encode())
    return f"{RULES_CODE_VERSION}-{digest.hexdigest()[:12]}"


def _read_rules(extra_dir: Path | None) -> Rules:
    lists = {}
    for name in LIST_NAMES:
        lines = read_list(LISTS / name)
        if extra_dir is not None and (extra_dir / name).is_file():
            lines += read_list(extra_dir / name)
        lists[name] = lines
    compiled = [tuple(re.compile(line) for line in lists[name]) for name in LIST_NAMES]
    return Rules(*compiled, version=rules_version(lists))


def _stamp(extra_dir: Path | None) -> tuple:
    """The identity of every list file: a few stat calls, so checking for
    edits at every crash costs nothing next to reading and compiling."""
    paths = [LISTS / n for n in LIST_NAMES] + ([extra_dir / n for n in LIST_NAMES] if extra_dir else [])
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((str(path), None))  # absent: creating it is a change too
        else:
            out.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


_loaded: dict[Path | None, tuple[tuple, Rules]] = {}


def load_rules(extra_dir: Path | None = None) -> Rules:
    """The built-in lists plus ``extra_dir``'s. A long-running collector or
    worker calls this per crash: unchanged files give the same object, an
    edited one is read again, so nobody keeps grouping with replaced rules."""
    extra_dir = Path(extra_dir) if extra_dir is not None else None
    stamp = _stamp(extra_dir)  # before reading: an edit during the read shows next time
    cached = _loaded.get(extra_dir)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    rules = _read_rules(extra_dir)
    _loaded[extra_dir] = (stamp, rules)
    return rules


def matches(patterns: tuple[re.Pattern, ...], text: str | None) -> bool:
    return text is not None and any(p.fullmatch(text) for p in patterns)


@dataclass(frozen=True)
class Candidate:
    """A crashing-thread frame on its way into a signature."""

    frame: Frame
    name: str
    symbolized: bool
    system: bool  # in the C/C++ runtime or loader
    prefix: bool = False
    machinery: bool = False  # the interpreter's own (python_skip.txt)
    library: bool = False  # a Python frame of the standard library or an installed package


@dataclass(frozen=True)
class State:
    frames: tuple[Candidate, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    def drop(self, keep: list[Candidate], dropped: list[tuple[Candidate, str]], note: str | None = None) -> "State":
        skipped = self.skipped + tuple((f"#{c.frame.index} {c.name}", why) for c, why in dropped)
        return State(tuple(keep), skipped, self.notes + ((note,) if note else ()))


def frame_name(frame: Frame, rules: Rules | None = None) -> tuple[str, bool]:
    """The name a frame contributes, and whether it came from a symbol."""
    if frame.python:
        return python_name(frame.file, frame.function, rules.python_library if rules else ())[0], True
    if frame.function:
        return normalize_function(frame.function), True
    if frame.module and frame.offset is not None:
        return f"{frame.module_name}+{frame.offset:#x}", False
    if frame.module:  # the module's load base unknown (a core without NT_FILE): no stable offset
        return f"{frame.module_name}+?", False
    if frame.pc is None:
        return "@<unavailable>", False
    return f"@{frame.pc:#x}", False


# -- the rules, in order ---------------------------------------------------

def handler_frames(candidates) -> int:
    """How many frames a program's own crash handler put on top of the
    crash: up to and including the first signal trampoline, else none."""
    for i, c in enumerate(candidates):
        if c.name == "<signal handler called>":
            return i + 1
    return 0


def rule_below_signal_handler(state: State, rules: Rules, analysis: Analysis) -> State:
    """A program's own crash handler ran on top of the crash: the bug is
    below the signal trampoline."""
    cut = handler_frames(state.frames)
    if not cut:
        return state
    return state.drop(list(state.frames[cut:]), [(d, "crash handler above the signal") for d in state.frames[:cut]])


def rule_skip_listed(state: State, rules: Rules, analysis: Analysis) -> State:
    keep, dropped = [], []
    for c in state.frames:
        if matches(rules.skip, c.name):
            dropped.append((c, "raising, aborting or unwinding (skip.txt)"))
        elif c.machinery:
            dropped.append((c, "interpreter machinery (python_skip.txt)"))
        else:
            keep.append(c)
    return state.drop(keep, dropped)


def rule_python_caller(state: State, rules: Rules, analysis: Analysis) -> State:
    """A Python crash is the program's Python function that made the call,
    wherever it was called from: frames up to the first Python frame that
    is not library code (python_library.txt) and none of its callers, so
    one function's crash through two call paths is one group, and two
    functions crashing in the same C call are two."""
    for i, c in enumerate(state.frames):
        if c.frame.python and not c.library:
            rest = state.frames[i + 1:]
            if not rest:
                return state
            return State(state.frames[:i + 1], state.skipped + ((f"{len(rest)} frames", "callers of the "
                         "program's Python function"),), state.notes)
    return state


def rule_leading_library(state: State, rules: Rules, analysis: Analysis) -> State:
    """Before the first program frame: keep memcpy-like frames as a prefix,
    drop runtime internals (the libstdc++ guts under std::terminate)."""
    keep, dropped = [], []
    frames = list(state.frames)
    if not any(not c.system and not matches(rules.prefix, c.name) for c in frames):
        return state  # nothing but library frames: keep them all
    i = 0
    while i < len(frames):
        c = frames[i]
        if matches(rules.prefix, c.name) and (c.system or not c.frame.file):
            keep.append(replace(c, prefix=True))
        elif c.system:
            dropped.append((c, "C/C++ runtime internal"))
        else:
            break
        i += 1
    return state.drop(keep + frames[i:], dropped)


def rule_collapse_recursion(state: State, rules: Rules, analysis: Analysis) -> State:
    """A run of the same cycle is one occurrence of it. A stack overflow
    (a recursion deeper than the frames kept) ends its signature with the
    cycle: the frames below it are known only when the stack is shallow
    enough to unwind to the bottom, so keeping them would give the same bug
    a group per stack size."""
    names = [c.name for c in state.frames]
    collapsed, removed = collapse_repeats(names)
    if not removed:
        return state
    keep, dropped, j = [], [], 0
    for c in state.frames:  # collapse keeps the first of each run, in order
        if j < len(collapsed) and c.name == collapsed[j]:
            keep.append(c)
            j += 1
        else:
            dropped.append((c, "recursion"))
    skipped = ((f"{removed} frames", "recursion"),)
    recursion = analysis.recursion
    thread = analysis.crashing_thread
    note = f"recursion collapsed ({removed} repeated frames)"
    if recursion:
        note = f"recursion of {' > '.join(recursion.cycle)}, {recursion.depth_text} deep"
        last = max((i for i, c in enumerate(keep) if c.name in recursion.cycle), default=None)
        if last is not None and thread is not None and thread.truncated and last + 1 < len(keep):
            below = keep[last + 1:]
            keep = keep[:last + 1]
            skipped += ((f"{len(below)} frames", "below a stack overflow's cycle"),)
    return State(tuple(keep), state.skipped + skipped, state.notes + (note,))


def rule_take(state: State, rules: Rules, analysis: Analysis) -> State:
    keep, count = [], 0
    for c in state.frames:
        keep.append(c)
        if not c.prefix:
            count += 1
            if count == SIGNATURE_FRAMES:
                break
    return State(tuple(keep), state.skipped, state.notes)


RULES = (rule_below_signal_handler, rule_skip_listed, rule_leading_library,
         rule_collapse_recursion, rule_python_caller, rule_take)


def generate(analysis: Analysis, rules: Rules | None = None) -> Signature:
    rules = rules or load_rules()
    analysis = analysis.mixed()  # a Python crash: its Python frames in the stack
    thread = analysis.crashing_thread
    if thread is None or not thread.frames:
        return _no_frames(analysis, rules)
    python = analysis.python is not None or interpreter_of(
        analysis.executable, [m.path for m in analysis.modules]) is not None
    candidates = []
    for f in thread.frames:
        name, symbolized = frame_name(f, rules)
        library = f.python and python_name(f.file, f.function, rules.python_library)[1]
        candidates.append(Candidate(f, name, symbolized, matches(rules.system_modules, f.module_name),
                                    machinery=python and not f.python and matches(rules.python_skip, name),
                                    library=library))
    state = State(tuple(candidates))
    for rule in RULES:
        try:
            state = rule(state, rules, analysis)
        except Exception as exc:  # a broken rule must not lose the crash
            state = replace(state, notes=state.notes + (f"{rule.__name__} failed: {exc}",))
    parts = [c.name for c in state.frames]
    if analysis.assertion:
        parts.append(f"assert({analysis.assertion})")
    if not parts:
        return _no_frames(analysis, rules)
    symbolized = sum(1 for c in state.frames if c.symbolized)
    quality = symbolized / len(state.frames) if state.frames else 0.0
    return Signature(text=SEPARATOR.join(parts), frames=tuple(parts), skipped=state.skipped,
                     key_frames=key_frames(candidates, rules), quality=round(quality, 2),
                     notes=state.notes, rules_version=rules.version)


def key_frames(candidates: list[Candidate], rules: Rules) -> tuple[int, ...]:
    """The first frames that belong to the program, not to its runtime: a
    statically linked libc's strlen is in the program's file, but is no
    more the program's than a shared libc's. A crash handler's frames are
    left out as the signature leaves them out."""
    out = []
    for c in candidates[handler_frames(candidates):]:
        if c.system or c.machinery or c.library or matches(rules.skip, c.name):
            continue
        if matches(rules.prefix, c.name) and not c.frame.file:
            continue
        out.append(c.frame.index)
        if len(out) == KEY_FRAMES:
            break
    return tuple(out)


def _no_frames(analysis: Analysis, rules: Rules) -> Signature:
    """No backtrace: group by what is known, so these crashes stay visible.
    The reason is the first problem's code, in words: rewording a message
    must not split a group."""
    exe = (analysis.executable or "unknown").rsplit("/", 1)[-1]
    sig = analysis.signal.name if analysis.signal else "no signal"
    first: Problem | None = analysis.problems[0] if analysis.problems else None
    if first is None:
        reason, why = "no frames", "no frames"
    elif first.code == UNKNOWN:  # an old stored string: group by its words, as before codes
        reason, why = first.message.split(":")[0], first.message
    else:
        reason, why = first.label, first.message
    text = f"{exe} | {sig} | {reason}"
    return Signature(text=text, frames=(text,), notes=("no backtrace: " + why,),
                     rules_version=rules.version)
