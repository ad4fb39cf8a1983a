"""``analyze_core``: a core analyzed in the analysis sandbox, the caller's side.

The analysis itself (``analyzer.analyze``: pyelftools, the enrichers, PyStack)
runs in the sandbox's child, which imports it there; the caller only stages
the inputs, answers the child's requests for host and debug files, and
checks the answer. So a cold ``coretriage ingest`` does not import the
analyzer twice (once in each process) while gdb starts.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
from pathlib import Path

from analyzer import problems as P
from analyzer.gdb import Gdb, GdbBudget
from analyzer.model import Analysis
from analyzer.problems import Problem
from analyzer.sandbox import Sandbox, SandboxError, SandboxPolicy, analysis_sandbox

_BUILD_ID = re.compile(r"[0-9a-f]{16,80}")
HOST_FILE_BYTES = 4 << 30  # what one analysis may have copied in from the host


def analyze_core(core: Path, executable: Path | None = None, sysroot: Path | None = None,
                 budget: GdbBudget = GdbBudget(), options: dict | None = None,
                 gdb: Sandbox | Gdb | None = None, sandbox: SandboxPolicy | None = None,
                 symbols=None) -> Analysis:
    """Analyze ``core`` in a sandbox (``analyzer.sandbox``): gdb and every
    ELF/DWARF parser run as an unprivileged user, with no network (debug
    files come from ``symbols``, outside), writing nowhere but a scratch directory. The
    inputs are copied in; the paths in the answer are the caller's.

    ``gdb``: a sandbox the caller started early (``analysis_sandbox``), so
    that its set-up and gdb's start-up overlap the caller's own; it is used
    and closed here. (A plain ``Gdb`` is not confined: it is closed unused.)
    ``symbols(build_id) -> (path or None, note or None)``: where the caller
    finds a separate debug file the analysis lacks (its symbol store,
    debuginfod); run here, outside the sandbox, the file copied in.

    Raises ``SandboxError`` when the sandbox cannot be built: never falls
    back to analyzing unconfined."""
    if isinstance(gdb, Gdb):
        gdb.close()
        gdb = None
    box = gdb or analysis_sandbox(budget, sandbox)
    box.symbols = symbols
    try:
        return _in_sandbox(box, Path(core), executable, sysroot, options or {})
    finally:
        box.close()


def _in_sandbox(box: Sandbox, core: Path, executable, sysroot, options: dict) -> Analysis:
    box.start()
    try:
        job = {"core": box.stage_file(core, "core")}
    except OSError as exc:
        if exc.errno == errno.ENOSPC:  # the core is fine: no record of it as unreadable, try again later
            raise SandboxError(f"no space to copy {core} into the analysis sandbox") from None
        return Analysis(core=str(core), problems=(Problem(P.UNREADABLE_CORE, f"cannot read core: {exc.strerror}"),))
    try:
        job["executable"] = box.stage_file(executable, f"exe-{Path(executable).name}") if executable else None
        job["sysroot"] = box.stage_tree(sysroot, "sysroot") if sysroot else None
    except OSError as exc:
        raise SandboxError(f"cannot copy {exc.filename or 'an input'} into the analysis sandbox: "
                           f"{exc.strerror}") from None
    job["options"] = options
    answer = box.call(job)
    try:  # what a sandbox taken over by a hostile file says is data, never a crash here
        found = Analysis.from_dict(answer)
        _check_types(found)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SandboxError(f"the analysis sandbox answered something that is not an analysis "
                           f"({type(exc).__name__}: {exc})") from None
    modules = tuple(dataclasses.replace(m, found_at=box.outside(m.found_at)) if m.found_at else m
                    for m in found.modules)
    problems = tuple(Problem(p.code, box.outside(p.message)) for p in found.problems)
    return dataclasses.replace(found, core=str(core), modules=modules, problems=problems)


def _check_types(analysis: Analysis) -> None:
    """Every field of the (nested, frozen) records has its declared type:
    the rules and the store downstream may rely on it."""
    _checker(Analysis)(analysis, "analysis")


_CHECKERS: dict = {}  # a type hint -> a function (value, where) that raises TypeError


def _checker(hint):
    """A checker for ``hint``, made once: 100,000 frames are checked in a blink."""
    import types
    import typing

    key = hint
    if key in _CHECKERS:
        return _CHECKERS[key]

    def fail(where, what):
        raise TypeError(f"{where} is not {what}")

    if dataclasses.is_dataclass(hint):
        _CHECKERS[key] = lambda v, w: None  # (no record contains itself)
        fields = [(name, _checker(h)) for name, h in typing.get_type_hints(hint).items()]

        def check(v, w, cls=hint):
            if type(v) is not cls:
                fail(w, f"a {cls.__name__}")
            for name, field_check in fields:
                field_check(getattr(v, name), w + "." + name)
    elif typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [_checker(a) for a in typing.get_args(hint)]

        def check(v, w):
            for option in options:
                try:
                    return option(v, w)
                except TypeError:
                    continue
            fail(w, "of the right type")
    elif typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _checker(args[0])

            def check(v, w):
                if type(v) is not tuple:
                    fail(w, "a list")
                for i, x in enumerate(v):
                    item(x, w)
        else:
            items = [_checker(a) for a in args]

            def check(v, w):
                if type(v) is not tuple or len(v) != len(items):
                    fail(w, f"a list of {len(items)}")
                for x, item_check in zip(v, items):
                    item_check(x, w)
    elif hint is type(None):
        def check(v, w):
            if v is not None:
                fail(w, "null")
    elif isinstance(hint, type) and issubclass(hint, Problem):
        def check(v, w):
            if not isinstance(v, Problem) or type(v.code) is not str:
                fail(w, "a problem")
    elif hint is float:
        def check(v, w):
            if type(v) not in (int, float):
                fail(w, "a number")
    else:
        def check(v, w, t=hint):
            if type(v) is not t:
                fail(w, t.__name__)
    _CHECKERS[key] = check
    return check



# -- the parent's answers to the sandbox's requests ------------------------

def _grant_host_file(box: Sandbox, request) -> dict | None:
    """The parent's answer to ``_host_file``: only a regular ELF file whose
    build-id is the one asked for (so never a secret that is not a binary),
    read through the descriptor that was checked, within a byte budget; for
    another build, that it is not used (not its build-id). The path is
    looked at with O_PATH first, so a device or FIFO a core names is never
    opened; nothing under the directories the sandbox hides (the data dir)
    is given. The build-id is read by ``analyzer.elfid`` (a few fixed-size
    structs): nothing else of the file is parsed outside the sandbox."""
    from analyzer import elfid, elfinfo

    if isinstance(request, dict) and "debug_file" in request:
        return _grant_debug_file(box, request["debug_file"])
    path = request.get("host_file") if isinstance(request, dict) else None
    build_id = request.get("build_id") if isinstance(request, dict) else None
    if not (isinstance(path, str) and path.startswith("/") and "\0" not in path and len(path) < 4096
            and (build_id is None or isinstance(build_id, str) and _BUILD_ID.fullmatch(build_id))):
        return None
    try:
        handle = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        real = os.readlink(f"/proc/self/fd/{handle}")  # where it is, whatever symlinks or ".." led there
        if not stat.S_ISREG(os.fstat(handle).st_mode) or any(
                os.path.commonpath([real, hidden]) == hidden for hidden in box.policy.hide):
            return None
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    finally:
        os.close(handle)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or os.pread(fd, 4, 0) != b"\x7fELF":
            return None
        why = elfinfo.refusal(path, elfid.build_id(elfid.fd_reader(fd)) if build_id else None, build_id,
                              show_ids=False)
        if why:
            return {"refused": why}
        if box.staged_bytes + st.st_size > HOST_FILE_BYTES:
            return None
        return {"path": box.stage_fd(fd, path, f"host-{box.requests}-{Path(path).name}")}
    except OSError:
        return None
    finally:
        os.close(fd)


def _grant_debug_file(box: Sandbox, build_id) -> dict | None:
    """The parent's answer to ``_debug_file``: asks ``box.symbols`` (the
    caller's sources) and copies the file it names in, within the byte budget."""
    source = getattr(box, "symbols", None)
    if source is None or not isinstance(build_id, str) or not _BUILD_ID.fullmatch(build_id):
        return None
    try:
        found, note = source(build_id)
    except Exception as exc:  # noqa: BLE001 - a broken source costs the symbols, never the analysis
        found, note = None, f"symbols for {build_id[:12]} not looked for: {type(exc).__name__}: {exc}"
    reply: dict = {"note": note} if note else {}
    if found is not None:
        try:
            size = os.stat(found).st_size
            if box.staged_bytes + size <= HOST_FILE_BYTES:
                reply["path"] = box.stage_file(found, f"debug-{build_id}")
        except (OSError, ValueError):
            pass
    return reply or None


