"""The mixed stack of an interpreter's thread: its native frames, with each
frame of the eval loop replaced by the Python frames that ran in it.

Pure: gdb's ``Thread`` and PyStack's ``PythonThread`` in, a ``Thread`` out.
One call of the eval loop runs an entry frame (called from C) and every
Python frame that frame called without leaving Python; so the Python frames
split at their entry frames into runs, and the n-th run from the top of the
stack belongs to the n-th eval frame from the top.
"""

from __future__ import annotations

import dataclasses
import re

from analyzer.model import Frame, PythonFrame, PythonState, PythonThread, Thread

# the eval loop's C function from Python 2.7 to 3.13 (and its compiler clones)
EVAL_FUNCTION = re.compile(r"_?PyEval_EvalFrame(Default|Ex)(\.\w+)*")


def is_eval(frame: Frame) -> bool:
    return bool(frame.function) and not frame.python and EVAL_FUNCTION.fullmatch(frame.function) is not None


def runs(frames: tuple[PythonFrame, ...]) -> list[list[PythonFrame]]:
    """Innermost first, the frames of each eval-loop call (each run ends,
    outermost, with its entry frame)."""
    out: list[list[PythonFrame]] = [[]]
    for f in frames:
        out[-1].append(f)
        if f.entry:
            out.append([])
    return [r for r in out if r]


def mixed_frames(frames: tuple[Frame, ...], python: PythonThread) -> tuple[Frame, ...]:
    """``frames`` with the eval frames replaced by ``python``'s frames.
    Indexes count the mixed stack, and keep any gap gdb's frames had (the
    middle of a very deep stack). More runs than eval frames (a stack cut
    short): the rest go to the outermost eval frame; no eval frame at all
    (an interpreter without symbols): the Python frames follow the native
    ones."""
    pending = runs(python.frames)
    evals = [i for i, f in enumerate(frames) if is_eval(f)]
    assigned: dict[int, list[PythonFrame]] = {}
    for n, position in enumerate(evals):
        if not pending:
            break
        if n < len(evals) - 1:
            assigned[position] = pending.pop(0)
        else:
            assigned[position], pending = [f for r in pending for f in r], []
    out: list[Frame] = []
    shift = 0
    for i, f in enumerate(frames):
        ran = assigned.get(i)
        if not ran:
            out.append(dataclasses.replace(f, index=f.index + shift) if shift else f)
            continue
        for k, p in enumerate(ran):
            out.append(_python_frame(f.index + shift + k, p))
        shift += len(ran) - 1
    if pending:  # no eval frame to put them in
        start = (out[-1].index + 1) if out else 0
        out.extend(_python_frame(start + k, p) for k, p in enumerate(f for r in pending for f in r))
    return tuple(out)


def _python_frame(index: int, p: PythonFrame) -> Frame:
    return Frame(index=index, pc=None, function=p.function, file=p.file, line=p.line, python=True, locals=p.locals)


def pair(threads: tuple[Thread, ...], python: PythonState) -> dict[int, PythonThread]:
    """gdb's thread number -> the Python thread that ran on it. By thread id;
    then, for a process forked after its interpreter started (uwsgi's and
    gunicorn's workers, without lazy-apps), whose thread states still carry
    the parent's thread id: the Python thread holding the GIL to the crashed
    thread if that ran the eval loop, and a last one left to the last such
    thread left."""
    out: dict[int, PythonThread] = {}
    used: set[int] = set()
    for t in threads:
        py = python.thread(t.lwp)
        if py is not None:
            out[t.number] = py
            used.add(id(py))
    left = [p for p in python.threads if id(p) not in used and p.frames]
    evals = [t for t in threads if t.number not in out and any(is_eval(f) for f in t.frames)]
    crashed = next((t for t in evals if t.crashed), None)
    holder = next((p for p in left if p.holds_gil), None)
    if crashed is not None and holder is not None:
        out[crashed.number] = holder
        left.remove(holder)
        evals.remove(crashed)
    if len(left) == 1 and len(evals) == 1:
        out[evals[0].number] = left[0]
    return out


def mixed_threads(threads: tuple[Thread, ...], python: PythonState) -> tuple[Thread, ...]:
    out = []
    paired = pair(threads, python)
    for t in threads:
        py = paired.get(t.number)
        if py is None or not py.frames or any(f.python for f in t.frames):
            out.append(t)
            continue
        frames = mixed_frames(t.frames, py)
        extra = len(frames) - len(t.frames)
        depth = t.depth + extra if t.depth is not None else None
        out.append(dataclasses.replace(t, frames=frames, depth=depth))
    return tuple(out)
