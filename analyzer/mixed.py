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
    return Frame(index=index, pc=None, function=p.function, file=p.file, line=p.line, python=True)


def mixed_threads(threads: tuple[Thread, ...], python: PythonState) -> tuple[Thread, ...]:
    out = []
    for t in threads:
        py = python.thread(t.lwp)
        if py is None or not py.frames or any(f.python for f in t.frames):
            out.append(t)
            continue
        frames = mixed_frames(t.frames, py)
        extra = len(frames) - len(t.frames)
        depth = t.depth + extra if t.depth is not None else None
        out.append(dataclasses.replace(t, frames=frames, depth=depth))
    return tuple(out)
