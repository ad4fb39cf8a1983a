"""The Python stacks of an interpreter in a core, read by PyStack.

``interpreter_of`` (pure) says whether a crashed process ran Python: its
executable or one of its mapped modules is python3.x or libpython (python3,
uwsgi's python3 plugin, gunicorn, Celery, an embedded interpreter).
``read_stacks`` runs PyStack's Python API on the core in a child process of
its own, forked inside the analysis sandbox, under the same wall-clock limit
and address-space cap as gdb: PyStack parses the same hostile memory and
ELF files, and a core that makes it loop or balloon must cost no more than
gdb may. Whatever goes wrong comes back as one line; the native analysis
stands without the Python frames.

Locals (and arguments) are read only when asked (``python_locals``): they
hold what a request carried, passwords and tokens included. ``masked``
hides them as the environment is hidden (``analyzer.secrets``), before the
analysis leaves the sandbox; only admins are shown them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import select
import signal
import time
from pathlib import Path

from analyzer.model import PythonFrame, PythonState, PythonThread

_INTERPRETER = re.compile(r"(lib)?python[23](\.\d+)?[a-z]*(\.so(\.[\d.]+)?|-config)?")
MAX_THREADS = 1024
MAX_FRAMES = 256  # innermost Python frames kept per thread
MAX_TEXT = 1024  # characters of a file or function name
MAX_ANSWER = 64 << 20  # bytes of JSON from the reader
MAX_LOCALS = 64  # arguments and locals kept per frame
MAX_VALUE = 256  # characters of a local's repr


class PythonStacksError(Exception):
    """PyStack could not read the core; the message is one line."""


def interpreter_of(executable: str | None, modules) -> str | None:
    """The path of the interpreter's module: a libpython the process mapped
    (an embedding program's), else the executable when it is python3.x."""
    for path in modules:
        name = path.rsplit("/", 1)[-1]
        if name.startswith("libpython") and _INTERPRETER.fullmatch(name):
            return path
    if executable and _INTERPRETER.fullmatch(executable.rsplit("/", 1)[-1]):
        return executable
    return None


def read_stacks(core: Path, executable: Path, libraries: Path | None, interpreter: str,
                timeout: float, memory: int, with_locals: bool = False) -> PythonState:
    """Every thread's Python stack; raises ``PythonStacksError``.
    ``libraries``: a directory of the checked modules by file name (PyStack
    looks there first, before the path the core names). ``with_locals``:
    each frame's arguments and locals too, unmasked (see ``masked``)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader: limits of its own, one JSON answer, never returns
        code = 0
        try:
            os.close(read_fd)
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            answer = _read(core, executable, libraries, with_locals)
        except BaseException as exc:  # noqa: BLE001 - everything becomes the one line
            answer = {"error": _one_line(exc)}
        try:
            data = json.dumps(answer).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(write_fd)
    try:
        data = _collect(read_fd, pid, timeout)
    finally:
        os.close(read_fd)
    try:
        answer = json.loads(data)
    except ValueError:
        raise PythonStacksError("PyStack's reader ended without an answer") from None
    if not isinstance(answer, dict):
        raise PythonStacksError("PyStack's reader answered nonsense")
    if "error" in answer:
        raise PythonStacksError(str(answer["error"])[:300])
    return state_from(answer, interpreter)


def _collect(fd: int, pid: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks, size = [], 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PythonStacksError(f"PyStack did not finish within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_ANSWER:
                raise PythonStacksError("PyStack's answer is too large")
            chunks.append(chunk)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
        raise PythonStacksError(f"PyStack died of signal {os.WTERMSIG(status)}")
    return b"".join(chunks)


def _read(core: Path, executable: Path, libraries: Path | None, with_locals: bool) -> dict:
    """In the reader: PyStack's threads as plain data."""
    from pystack.engine import NativeReportingMode, get_process_threads_for_core

    threads = get_process_threads_for_core(str(core), str(executable),
                                           str(libraries) if libraries else None,
                                           native_mode=NativeReportingMode.OFF, locals=with_locals)
    out = []
    version = None
    for t in list(threads)[:MAX_THREADS]:
        version = version or t.python_version
        frames = [f for f in t.all_frames if not f.is_shim]  # outermost first
        frames.reverse()
        out.append({"tid": t.tid, "holds_gil": bool(t.holds_the_gil), "gc": bool(t.is_gc_collecting),
                    "name": t.name,
                    "frames": [{"function": f.code.scope, "file": f.code.filename,
                                "line": f.code.location.lineno, "entry": bool(f.is_entry),
                                "locals": _locals(f) if with_locals else []}
                               for f in frames[:MAX_FRAMES]]})
    return {"version": ".".join(map(str, version)) if version else None, "threads": out}


def _locals(frame) -> list[list[str]]:
    """Arguments first, then the other locals, as PyStack gives them."""
    out = []
    for values in (frame.arguments or {}, frame.locals or {}):
        for name, value in values.items():
            if len(out) == MAX_LOCALS:
                return out
            out.append([str(name)[:MAX_TEXT], str(value)[:MAX_VALUE]])
    return out


def state_from(answer: dict, interpreter: str) -> PythonState:
    """The reader's JSON as records; anything malformed is an error (the
    reader ran on hostile memory)."""
    try:
        threads = []
        for t in answer.get("threads") or ():
            frames = tuple(PythonFrame(function=_printable(_text(f["function"])), file=_printable(_text(f["file"])),
                                       line=f["line"] if type(f.get("line")) is int else None,
                                       entry=bool(f.get("entry")),
                                       locals=tuple((_printable(_text(k)), _printable(_text(v)[:MAX_VALUE]))
                                                    for k, v in (f.get("locals") or ())[:MAX_LOCALS]))
                           for f in t["frames"])
            threads.append(PythonThread(tid=int(t["tid"]), frames=frames, holds_gil=bool(t.get("holds_gil")),
                                        gc_collecting=bool(t.get("gc")),
                                        name=_text(t["name"]) if t.get("name") else None))
        version = answer.get("version")
        return PythonState(interpreter=interpreter, version=_text(version) if version else None,
                           threads=tuple(threads))
    except (KeyError, TypeError, ValueError) as exc:
        raise PythonStacksError(f"PyStack's answer is malformed ({type(exc).__name__})") from None


def masked(state: PythonState, names) -> PythonState:
    """``state`` with every local masked as an environment variable is: a
    secret name hides the whole value, and credentials in any value (URLs,
    ``password=...``, bearer tokens) are hidden. Idempotent."""
    from analyzer.secrets import mask_environ

    def frame(f: PythonFrame) -> PythonFrame:
        if not f.locals:
            return f
        return dataclasses.replace(f, locals=tuple(mask_environ(dict(f.locals), names).items()))

    return dataclasses.replace(state, threads=tuple(
        dataclasses.replace(t, frames=tuple(frame(f) for f in t.frames)) for t in state.threads))


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value[:MAX_TEXT]


def _printable(text: str) -> str:
    """A name, file or local as one line: what the process held is any text
    (a newline would forge a frame in a text export)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
