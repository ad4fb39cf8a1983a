"""Turn one core file into an ``Analysis``.

Everything here runs in the analysis sandbox's child (``analyzer.sandbox``);
``analyze_core``, the caller's side, is ``analyzer.confined``'s. The core's notes are read directly (pyelftools); gdb (through ``Gdb``)
unwinds the threads, reads registers, disassembles and evaluates the few
expressions enrichers ask for. Every step that fails adds a problem to the
analysis instead of failing it: a truncated core or a missing executable
still gives a record with what could be learned and why the rest is missing.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import tempfile
from contextlib import ExitStack
from pathlib import Path

from analyzer import elfinfo, sigframe
from analyzer.corenotes import CoreNotes, NotACore, read_core
from analyzer.enrichers import ENRICHERS, Target, enrich_all
from analyzer import problems as P
from analyzer.gdb import MULTIARCH, EarlyGdb, Gdb, GdbBudget, GdbError, GdbTimeout, mi_quote
from analyzer.model import (Analysis, CxxException, Frame, Instruction, Module, PythonState, Recursion,
                            SignalInfo, Thread)
from analyzer.problems import Problem
from analyzer.python import PythonStacksError, interpreter_of, masked, read_stacks
from analyzer.secrets import DEFAULT_SECRET_NAMES, mask_psargs, mask_text
from analyzer.confined import (_BUILD_ID, HOST_FILE_BYTES, _grant_debug_file, _grant_host_file,  # noqa: F401
                               analyze_core)  # the caller's side, named here too
from analyzer.sandbox import INPUTS
from analyzer.sandbox import request as sandbox_request
from analyzer import cxxexception as cxx
from analyzer.signals import FAULTS, SI_KERNEL, RawSiginfo, code_name, parse_siginfo, signal_name
from analyzer.stack import find_cycle

MAX_FRAMES = 256  # innermost frames kept per thread
OUTER_FRAMES = 16  # outermost frames kept when a thread is deeper than that
# Never unwind further than this: gdb spends ~45 us and ~11 KB per frame, so
# an 8 MiB stack's overflow (~90,000 frames) took seconds and a 64 MiB one's
# ~40 s and 2.7 GB. Deeper stacks report "at least DEPTH_CAP frames".
DEPTH_CAP = 10_000
PYTHON_MIN_SECONDS = 30  # PyStack's time when gdb spent nearly all of the budget
REGISTERS = 24  # shown for an architecture analyzer.arch has no register list for

_SAFE_PATH = re.compile(r"^[\w./+@-]+$")
_STRING_VALUE = re.compile(r"""^0x[0-9a-f]+(?: <[^>]*>)? (["'].*)$""", re.DOTALL)
_ASSERT = re.compile(r"Assertion [`'](.*)' failed")
_LWP = re.compile(r"LWP (\d+)")
# NT_FILE names for memory that is no file's data: shared anonymous memory
_SHARED_MEMORY = re.compile(r"^/(dev/zero|SYSV[0-9a-f]+|memfd:|anon_hugepage|dev/shm/)")


# -- inside the sandbox (analyzer.sandbox imports these by name) -------------

# imported lazily by the analysis: loaded before the sandbox gives up root
# and before its scratch dir covers /tmp (a venv there would be out of reach)
PRELOAD = ("pygdbmi.gdbmiparser", "pystack.engine", "pystack.types", *ENRICHERS)


def _job(started: EarlyGdb, job: dict) -> dict:
    return analyze_here(Path(job["core"]), job.get("executable"), job.get("sysroot"), started.gdb.budget,
                        job.get("options"), started.gdb).to_dict()


DEBUG_REQUESTS = 256  # modules one analysis asks the parent debug files for


def _host_file(path: str, build_id: str | None) -> tuple[Path | None, str | None]:
    """A host file the core names that this process cannot see or read (the
    sandbox user; the sandbox hides /tmp and the data dir): the parent copies
    it in if it is the build the core recorded, else says why not. Outside a
    sandbox: (None, None)."""
    if not path.startswith("/"):
        return None, None
    reply = sandbox_request({"host_file": path, "build_id": build_id})
    if not isinstance(reply, dict):
        return None, None
    found, why = reply.get("path"), reply.get("refused")
    return (Path(found) if isinstance(found, str) else None), (why[:500] if isinstance(why, str) else None)


def _debug_file(build_id: str | None) -> tuple[Path | None, str | None]:
    """From inside the sandbox: the separate debug file of ``build_id`` the
    parent has (its symbol store, debuginfod), copied in; and a note when a
    symbol server could not be used. Outside a sandbox: (None, None)."""
    if not build_id or not _BUILD_ID.fullmatch(build_id):
        return None, None
    reply = sandbox_request({"debug_file": build_id})
    if not isinstance(reply, dict):
        return None, None
    found, note = reply.get("path"), reply.get("note")
    return (Path(found) if isinstance(found, str) and found.startswith(str(INPUTS) + "/") else None,
            " ".join(note.split())[:300] if isinstance(note, str) else None)


def analyze_here(core: Path, executable: Path | None = None, sysroot: Path | None = None,
                 budget: GdbBudget = GdbBudget(), options: dict | None = None,
                 gdb: Gdb | None = None) -> Analysis:
    """The analysis itself, in this process, unconfined: only for the
    sandbox's child. ``gdb``: a session started early; closed here.
    ``options``: ``show_literals`` (enrichers), ``secret_names``, the
    patterns the core's command line and Python locals are masked with
    (``analyzer.secrets``), ``python_stacks`` (False: no PyStack, the native
    analysis only) and ``python_locals`` (True: each Python frame's
    arguments and locals too)."""
    core = Path(core)
    gdb = gdb or Gdb(budget)
    try:
        try:
            with open(core, "rb") as f:
                notes = read_core(f)
        except NotACore as exc:
            return Analysis(core=str(core), problems=(Problem(P.NOT_A_CORE, f"not a core dump: {exc}"),))
        except OSError as exc:
            return Analysis(core=str(core),
                            problems=(Problem(P.UNREADABLE_CORE, f"cannot read core: {exc.strerror}"),))
        return _Analyzer(core, notes, executable, sysroot, gdb, options or {}).run()
    finally:
        gdb.close()


class _Analyzer:
    def __init__(self, core, notes: CoreNotes, executable, sysroot, gdb: Gdb, options):
        self.core = core
        self.notes = notes
        self.sysroot = Path(sysroot) if sysroot else None
        self.gdb = gdb
        self.options = options
        self.problems: list[Problem] = []
        self._links: Path | None | bool = False  # not made yet
        self.symbol_notes: list[Problem] = []  # after every other problem: never a frameless group's reason
        self.debug_dir: Path | None = None  # links .build-id/xx/rest.debug to the debug files handed in
        self.debug_asked = 0
        if notes.truncated:
            self.problem(P.TRUNCATED_CORE, "core is truncated: memory beyond the cut is missing")
        self.exe_path = notes.executable
        self.exe_file = None
        if self.exe_path or executable:
            # with a sysroot the program comes from it (or --exe); without one,
            # the host's file if it is the build that crashed
            self.exe_file = elfinfo.find_module(self.exe_path or "", self.sysroot,
                                                Path(executable) if executable else None, True,
                                                None if self.sysroot else dict(notes.build_ids).get(self.exe_path))
            if self.exe_file is None and self.exe_path and self.sysroot is None and not executable:
                # where find_module would have taken the host's file, had it been readable
                self.exe_file, _ = _host_file(self.exe_path, dict(notes.build_ids).get(self.exe_path))
        self.modules = self._modules()
        if self.exe_path and self.exe_file is None and not notes.mappings:  # no NT_FILE: _modules saw nothing
            self.problem(P.MISSING_EXECUTABLE, f"executable {self.exe_path} not found: its frames have no "
                         "symbols (pass --exe or --sysroot)")
        self._index = sorted(((m.start, m.end, m) for m in self.modules), key=lambda t: t[0])
        self._starts = [s for s, _, _ in self._index]

    def problem(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, message))

    # -- modules, from the core's file mappings and the files on disk ------
    def _modules(self) -> tuple[Module, ...]:
        core_ids = dict(self.notes.build_ids)
        out = []
        exe_mismatch = False
        for path, (start, end) in self.notes.module_bases().items():
            is_exe = path == self.exe_path
            found = self.exe_file if is_exe else elfinfo.find_module(path, self.sysroot, None, False,
                                                                     core_ids.get(path))
            refused = None
            if found is None and not is_exe:
                found, refused = _host_file(path, core_ids.get(path))
            facts = elfinfo.safe_facts(found) if found else None
            if found is None and not (is_exe and self.sysroot):  # host files: only the build that crashed
                refused = elfinfo.host_file_refused(path, core_ids.get(path)) or refused
                if refused:
                    self.problem(P.WRONG_BUILD if core_ids.get(path) else P.UNVERIFIED_MODULE, refused)
            if path not in core_ids and facts is None:
                continue  # not an ELF file: locale archives, shared memory, ...
            build_id = core_ids.get(path) or (facts.build_id if facts else None)
            symbols = "missing"
            if facts is not None:
                if core_ids.get(path) and facts.build_id and facts.build_id != core_ids[path]:
                    self.problem(P.WRONG_BUILD, f"{found} is not the build that crashed "
                                 f"(build-id {facts.build_id[:12]}, core has {core_ids[path][:12]})")
                    exe_mismatch |= is_exe
                    found, symbols = None, "missing"
                else:
                    symbols = facts.symbols
                    roots = (self.sysroot / "usr/lib/debug",) if self.sysroot else ()
                    if symbols != "debug" and elfinfo.debug_file_for(build_id, roots + (elfinfo.DEBUG_ROOT,)):
                        symbols = "debug"
                    if symbols != "debug" and self._handed_debug_file(build_id):
                        symbols = "debug"
            elif is_exe:
                self.problem(P.MISSING_EXECUTABLE, f"executable {path} not found: its frames have no symbols "
                             "(pass --exe or --sysroot)")
            out.append(Module(path=path, start=start, end=end, build_id=build_id, symbols=symbols,
                              found_at=str(found) if found else None))
        if exe_mismatch:
            self.exe_file = None
        if not self.notes.mappings and self.exe_file is not None and self.exe_path:
            out.extend(self._unmapped_exe())
        return tuple(out)

    def _handed_debug_file(self, build_id: str | None) -> bool:
        """Ask the parent for the debug file (``_debug_file``); link it where
        gdb's debug-file-directory looks it up by build-id."""
        self.debug_asked += 1
        if self.debug_asked > DEBUG_REQUESTS:  # the sandbox answers MAX_REQUESTS requests in all
            return False
        found, note = _debug_file(build_id)
        if note:
            self.symbol_notes.append(Problem(P.SYMBOLS_UNAVAILABLE, note))
        if found is None:
            return False
        if self.debug_dir is None:
            self.debug_dir = Path(tempfile.mkdtemp(prefix="coretriage-debug-"))
        link = self.debug_dir / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(found)
        return True

    def _unmapped_exe(self) -> list[Module]:
        """A core without NT_FILE (qemu's) maps no file: a non-PIE program
        given with --exe is where its headers say, so its frames still get
        a module, an offset and a build-id."""
        span = elfinfo.fixed_span(self.exe_file)
        facts = elfinfo.safe_facts(self.exe_file)
        if span is None or facts is None:
            return []
        return [Module(path=self.exe_path, start=span[0], end=span[1], build_id=facts.build_id,
                       symbols=facts.symbols, found_at=str(self.exe_file))]

    def _module_at(self, pc: int | None) -> Module | None:
        if pc is None:
            return None
        i = bisect.bisect_right(self._starts, pc) - 1
        if i >= 0:
            start, end, module = self._index[i]
            if start <= pc < end:
                return module
        return None

    def _frame(self, raw: dict) -> Frame:
        fields = parse_frame(raw)
        module = self._module_at(fields["pc"])
        if module is not None:
            fields.update(module=module.path, build_id=module.build_id, offset=fields["pc"] - module.start)
        elif fields["module"] is None and isinstance(raw.get("from"), str) and raw["from"].startswith("/"):
            fields["module"] = raw["from"]  # a core without NT_FILE (qemu's): gdb's own solib list
        return Frame(**fields)

    # -- the gdb session -------------------------------------------------
    def run(self) -> Analysis:
        n = self.notes
        signal = None
        if n.signal:
            # no NT_SIGINFO (qemu's cores): the number alone
            signal = (signal_info(RawSiginfo(n.signal, n.si_code, n.fault_address, n.sender_pid, n.sender_uid),
                                  n.pid) if n.si_code is not None else SignalInfo(n.signal, signal_name(n.signal)))
        # psargs is the command line as the process left it: mask it as the handler masks argv
        names = self.options.get("secret_names", DEFAULT_SECRET_NAMES)
        command_line = mask_psargs(n.psargs, names) if n.psargs else n.psargs
        result = dict(core=str(self.core), executable=self.exe_path, command_line=command_line,
                      pid=n.pid, uid=n.uid, signal=signal, modules=self.modules,
                      libc=self._libc(), architecture=n.arch.name if n.arch else None)
        if n.arch is not None and not n.arch.native and Path(self.gdb.gdb).name != MULTIARCH:
            self.problem(P.FOREIGN_ARCH, f"an {n.arch.name} core and no gdb-multiarch to read it "
                         "(apt-get install gdb-multiarch)")
        with ExitStack() as stack:
            try:
                core_arg = self._safe(self.core, stack)
                with self.gdb as gdb:
                    self._load(gdb, core_arg, stack)
                    result.update(self._inspect(gdb, signal))
            except GdbTimeout as exc:
                self.problem(P.GDB_TIMEOUT, f"{exc}: backtraces are incomplete")
            except GdbError as exc:
                self.problem(P.GDB_FAILED, f"gdb failed: {exc}")
            result["python"] = self._python(stack)
        return Analysis(**result, problems=tuple(dict.fromkeys(self.problems + self.symbol_notes)))

    def _python(self, stack: ExitStack) -> PythonState | None:
        """The Python stacks, when the process ran an interpreter: read by
        PyStack within gdb's budget (what is left of its time, at least
        ``PYTHON_MIN_SECONDS``; the same memory cap). A core it cannot read
        is one problem; the native frames stand."""
        interpreter = interpreter_of(self.exe_path, [m.path for m in self.modules])
        if interpreter is None or self.options.get("python_stacks") is False:
            return None
        if self.exe_file is None:
            self.problem(P.PYTHON_UNREADABLE, f"Python stacks not read: the executable {self.exe_path} "
                         "was not found")
            return None
        budget = self.gdb.budget
        timeout = min(budget.timeout, max(self.gdb.remaining(), PYTHON_MIN_SECONDS))
        # PyStack finds the executable's maps by its name: the core's, not the staged copy's
        named = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coretriage-exe-")))
        exe = named / (Path(self.exe_path).name if self.exe_path else "executable")
        try:
            exe.symlink_to(Path(self.exe_file).absolute())
            state = read_stacks(self.core, exe, self._solib_links(stack), interpreter, timeout, budget.memory,
                                with_locals=bool(self.options.get("python_locals")))
            return masked(state, self.options.get("secret_names", DEFAULT_SECRET_NAMES))
        except PythonStacksError as exc:
            self.problem(P.PYTHON_UNREADABLE, f"Python stacks not read by PyStack: {exc}")
        except OSError as exc:  # no process or pipe left for the reader
            self.problem(P.PYTHON_UNREADABLE, f"Python stacks not read: {exc.strerror or exc}")
        return None

    @staticmethod
    def _safe(path: Path, stack: ExitStack) -> str:
        """gdb's CLI takes the rest of the line as a file name: give it a
        plain one (a symlink) when the real name has spaces or quotes."""
        text = str(Path(path).absolute())
        if _SAFE_PATH.match(text):
            return text
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="coretriage-"))
        link = Path(tmp) / "link"
        link.symlink_to(text)
        return str(link)

    def _load(self, gdb: Gdb, core_arg: str, stack: ExitStack) -> None:
        # -gdb-set keeps MI quotes literally, so paths go through _safe instead.
        # Without a captured sysroot gdb gets one made of the files checked
        # here, never "/": it would load whatever host file the core names.
        root = self.sysroot or self._checked_root(stack)
        sysroot = self._safe(root, stack)
        gdb.console(f"set sysroot {sysroot}")
        debug_dirs = [str(elfinfo.DEBUG_ROOT)]
        if self.sysroot:
            debug_dirs.insert(0, f"{sysroot}/usr/lib/debug")
        if self.debug_dir is not None:  # the symbol store's and debuginfod's, handed in
            debug_dirs.insert(0, self._safe(self.debug_dir, stack))
        gdb.console(f"set debug-file-directory {':'.join(debug_dirs)}")
        # gdb names libraries by their link-map path (/lib/... where the
        # core says /usr/lib/...): let it find them by name where we did
        # and by their soname (liblua5.3.so.0 where the file is liblua5.3.so.0.0.0):
        # a directory of links under both names, and nothing else
        links = self._solib_links(stack)
        if links is not None:
            gdb.console(f"set solib-search-path {self._safe(links, stack)}")
        if self.exe_file:
            gdb.mi(f"-file-exec-and-symbols {mi_quote(str(self.exe_file))}")
        gdb.mi(f"-target-select core {core_arg}")

    def _solib_links(self, stack: ExitStack) -> Path | None:
        """A directory of links to the libraries found and checked, under
        their file names and sonames (gdb's and PyStack's search path);
        None when there are none. Made once per analysis."""
        if self._links is not False:
            return self._links
        libs = [m for m in self.modules if m.found_at and m.path != self.exe_path]
        links = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coretriage-solib-")))
        for m in libs:
            for name in (Path(m.path).name, elfinfo.soname(Path(m.found_at))):
                if name and "/" not in name and name not in (".", "..") \
                        and not (links / name).is_symlink():
                    (links / name).symlink_to(Path(m.found_at).absolute())
        self._links = links if libs else None
        return self._links

    def _checked_root(self, stack: ExitStack) -> Path:
        """A sysroot of links to the modules found and checked, at the paths the core maps them."""
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coretriage-root-")))
        for m in self.modules:
            parts = Path(m.path).parts
            if not m.found_at or not m.path.startswith("/") or ".." in parts:
                continue
            link = root / m.path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(Path(m.found_at).absolute())
        return root

    def _inspect(self, gdb: Gdb, signal: SignalInfo | None) -> dict:
        out: dict = {}
        info = gdb.mi("-thread-info")
        current = info.get("current-thread-id")
        threads = []
        recursion = None
        for t in info.get("threads", []):
            crashed = t.get("id") == current
            frames, depth, capped = self._frames(gdb, t["id"], crashed)
            lwp = _LWP.search(t.get("target-id", ""))
            thread = Thread(number=int(t["id"]), lwp=int(lwp.group(1)) if lwp else None, crashed=crashed,
                            frames=frames, depth=depth, name=t.get("name"), depth_is_minimum=capped and crashed)
            if crashed:
                recursion = self._recursion(thread)
                if capped and recursion is None:
                    self.problem(P.STACK_TOO_DEEP, f"thread {t['id']} is deeper than {DEPTH_CAP} frames and "
                                 "repeats no cycle of frames; unwinding stopped there")
                threads.insert(0, thread)
            else:
                threads.append(thread)
        out["threads"] = tuple(threads)
        out["recursion"] = recursion
        if current is None:
            return out
        sel = f"--thread {current} --frame 0"
        siginfo = self._siginfo(gdb, sel)
        if siginfo is not None:
            # the program's own crash handler re-raised the signal, or crashed
            # itself: the fault it was handed is the crash
            handled = self._handled_fault(gdb, threads[0] if threads and threads[0].crashed else None, siginfo)
            if handled is not None:
                siginfo = dataclasses.replace(signal_info(handled[0], self.notes.pid), reraised=siginfo)
                sel = f"--thread {current} --frame {handled[1]}"  # registers and code where the fault was
        if siginfo is not None:
            out["signal"] = siginfo
            signal = siginfo
        out["registers"] = self._registers(gdb, sel)
        out["disassembly"] = self._disassembly(gdb, sel)
        crashed = threads[0] if threads and threads[0].crashed else None
        if crashed is not None and cxx.unwinding(f.function for f in crashed.frames):
            out["exception"] = self._cxx_exception(gdb, sel)
        if signal is not None and signal.name == "SIGABRT":
            msg = self._string(gdb, "*(char **)&__abort_msg + 4")
            if msg:
                out["abort_message"] = msg.strip()
                found = _ASSERT.search(msg)
                if found:
                    out["assertion"] = found.group(1)
        target = Target(self.exe_path, self.exe_file, tuple(m.path for m in self.modules), self.options,
                        core=self.core, pid=self.notes.pid,
                        file_ranges=tuple((m.start, m.end) for m in self.notes.mappings
                                          if not _SHARED_MEMORY.match(m.path)))
        contexts, problems = enrich_all(target, _Probe(gdb, sel))
        out["context"] = contexts
        self.problems.extend(problems)
        return out

    def _frames(self, gdb: Gdb, thread: str, crashed: bool) -> tuple[tuple[Frame, ...], int | None, bool]:
        """(innermost frames, and the outermost when the crashing thread is
        deeper than that; its depth when more exist than were kept; whether
        that depth is only a minimum because unwinding stopped at the cap)."""
        limit = MAX_FRAMES if crashed else MAX_FRAMES // 2
        raw = gdb.mi(f"-stack-list-frames --thread {thread} 0 {limit - 1}").get("stack", [])
        frames = [self._frame(f) for f in raw]
        depth, capped = None, False
        if len(frames) >= limit:
            cap = DEPTH_CAP if crashed else limit + 1
            depth = int(gdb.mi(f"-stack-info-depth --thread {thread} {cap}").get("depth", len(frames)))
            capped = depth >= cap
            if crashed and limit < depth < cap:  # at the cap the frames there are not the outermost
                low = max(limit, depth - OUTER_FRAMES)
                outer = gdb.mi(f"-stack-list-frames --thread {thread} {low} {depth - 1}").get("stack", [])
                frames.extend(self._frame(f) for f in outer)
        return tuple(frames), depth, capped

    @staticmethod
    def _recursion(thread: Thread) -> Recursion | None:
        names = [f.function or (f"{f.module_name}+{f.offset:#x}" if f.module and f.offset is not None
                                else f.pc_text) for f in thread.frames]
        found = find_cycle(names)
        if found is None:
            return None
        cycle, repeats, _ = found
        depth = thread.depth or len(thread.frames)
        if thread.truncated:  # the frames not fetched are (nearly all) the cycle too
            repeats = max(repeats, (depth - OUTER_FRAMES) // len(cycle))
        return Recursion(cycle=cycle, repeats=repeats, depth=depth, depth_is_minimum=thread.depth_is_minimum)

    def _siginfo(self, gdb: Gdb, sel: str) -> SignalInfo | None:
        found = gdb.try_mi(f"-data-evaluate-expression {sel} $_siginfo")
        text = (found or {}).get("value", "")
        signo = re.search(r"si_signo = (-?\d+)", text)
        code = re.search(r"si_code = (-?\d+)", text)
        if not signo or not code:
            return None
        number, code = int(signo.group(1)), int(code.group(1))
        addr = re.search(r"_sigfault = \{si_addr = (0x[0-9a-f]+)", text)
        sender = re.search(r"_kill = \{si_pid = (-?\d+), si_uid = (\d+)", text)
        if code <= 0:
            raw = RawSiginfo(number, code, sender_pid=int(sender.group(1)) if sender else None,
                             sender_uid=int(sender.group(2)) if sender else None)
        else:
            raw = RawSiginfo(number, code, int(addr.group(1), 16) if addr and number in FAULTS
                             and code != SI_KERNEL else None)
        return signal_info(raw, self.notes.pid)

    def _cxx_exception(self, gdb: Gdb, sel: str) -> CxxException | None:
        """The uncaught C++ exception's type and what(), read from memory
        (``analyzer.cxxexception``): x86-64 and a shared libstdc++ only."""
        arch = self.notes.arch
        if arch is None or arch.name != "x86-64":
            return None
        try:
            tls = cxx.tls_location(gdb.console("disassemble __cxa_get_globals"))
        except GdbTimeout:
            raise
        except GdbError:
            return None
        fs = re.search(r"0x[0-9a-f]+|\d+", (gdb.try_mi(f"-data-evaluate-expression {sel} $fs_base") or {})
                       .get("value", ""))
        if tls is None or fs is None:
            return None

        read = _Probe(gdb, sel).read

        def word(address: int) -> int | None:
            data = read(address, 8)
            return int.from_bytes(data, "little") if data else None

        def byte(address: int) -> int | None:
            data = read(address, 1)
            return data[0] if data else None

        def string(address: int) -> str | None:
            return self._string(gdb, f"(char *){address:#x}")

        def symbol_at(address: int) -> str:
            try:
                return gdb.console(f"info symbol {address:#x}")
            except GdbError:
                return ""

        def demangle(mangled: str) -> str | None:
            if not re.fullmatch(r"[\w$.]+", mangled):
                return None  # never a gdb command from the core's bytes
            try:
                text = gdb.console(f"demangle -l c++ -- _ZTS{mangled}").strip()
            except GdbError:
                return None
            return text.removeprefix("typeinfo name for ") if text.startswith("typeinfo name for ") else None

        value = fs.group(0)
        found = cxx.uncaught(word, byte, string, int(value, 16) if value.startswith("0x") else int(value), tls,
                             symbol_at, demangle)
        if found is not None and found.what:  # a message may carry a connection string or a token
            names = self.options.get("secret_names", DEFAULT_SECRET_NAMES)
            found = dataclasses.replace(found, what=mask_text(found.what, names))
        return found

    def _handled_fault(self, gdb: Gdb, thread: Thread | None,
                       core_signal: SignalInfo) -> tuple[RawSiginfo, int] | None:
        """The fault the kernel handed the program's own handler, when the
        crash went through one (``<signal handler called>`` on the crashing
        stack), and the level of the frame that faulted: read from the
        signal frame, where the kernel put it. A handler without SA_SIGINFO
        (uwsgi's, faulthandler) has no siginfo there: then the saved
        registers' trap says which fault, when the process went on to kill
        itself (abort, raise)."""
        arch = self.notes.arch
        if thread is None or arch is None or arch.name not in sigframe.WANTED:
            return None
        level = next((f.index for f in thread.frames if f.function == "<signal handler called>"), None)
        if level is None:
            return None
        found = gdb.try_mi(f"-data-read-memory-bytes --thread {thread.number} --frame {level} $sp "
                           f"{sigframe.WANTED[arch.name]}") or {}
        memory = found.get("memory") or []
        contents = memory[0].get("contents", "") if memory and isinstance(memory[0], dict) else ""
        try:
            data = bytes.fromhex(contents)
        except ValueError:
            return None
        info = parse_siginfo(sigframe.siginfo_bytes(arch.name, data), arch.bits)
        # a fault the kernel raised: a handler for SIGCHLD or a timer is no crash handler
        if info is not None and not info.sent and info.signo in FAULTS:
            return info, level + 1
        if core_signal.sender_is_self:
            info = sigframe.sigcontext_fault(arch.name, data)
            if info is not None:
                return info, level + 1
        return None

    def _registers(self, gdb: Gdb, sel: str) -> tuple[tuple[str, str], ...]:
        names = (gdb.try_mi("-data-list-register-names") or {}).get("register-names", [])
        arch = self.notes.arch
        return pick_registers(names, arch.registers if arch else (),
                              lambda numbers: (gdb.try_mi(f"-data-list-register-values {sel} x "
                                                          f"{' '.join(map(str, numbers))}") or {}))

    def _disassembly(self, gdb: Gdb, sel: str, before: int = 6, after: int = 6) -> tuple[Instruction, ...]:
        pc_raw = (gdb.try_mi(f"-data-evaluate-expression {sel} $pc") or {}).get("value", "")
        pc_match = re.match(r"\(?.*?(0x[0-9a-f]+)", pc_raw)
        if not pc_match:
            return ()
        pc = int(pc_match.group(1), 16)
        insns = (gdb.try_mi(f"-data-disassemble {sel} -a {pc:#x} -- 0") or {}).get("asm_insns")
        if not insns:  # no function around the pc: disassemble forward only
            insns = (gdb.try_mi(f"-data-disassemble {sel} -s {pc:#x} -e {pc + 48:#x} -- 0") or {}).get("asm_insns")
        if not insns:
            self.problem(P.NO_CODE_AT_PC, f"no code readable at pc {pc:#x}")
            return ()
        addrs = [int(i["address"], 16) for i in insns]
        at = bisect.bisect_left(addrs, pc)
        window = insns[max(0, at - before):at + after + 1]
        return tuple(Instruction(address=int(i["address"], 16), text=i.get("inst", ""),
                                 function=i.get("func-name"),
                                 offset=int(i["offset"]) if i.get("offset", "").isdigit() else None,
                                 is_pc=int(i["address"], 16) == pc) for i in window)

    @staticmethod
    def _string(gdb: Gdb, expression: str, sel: str = "") -> str | None:
        found = gdb.try_mi(f"-data-evaluate-expression {sel} {mi_quote(expression)}")
        return parse_c_string((found or {}).get("value", ""))

    def _libc(self) -> str | None:
        files = {m.path: m.found_at for m in self.modules if m.found_at}

        def opener(path):
            try:
                return open(files[path], "rb") if path in files else None
            except OSError:
                return None

        found = elfinfo.libc_of(list(files), opener)
        if found is None and self.exe_file is not None and len(self.modules) <= 2:
            try:
                with open(self.exe_file, "rb") as f:  # statically linked
                    found = elfinfo.static_libc(f)
            except OSError:
                pass
        return found


_UNREADABLE = re.compile(r"^<(unavailable|optimized out|error:.*|not saved)>$|^\?\?$")


def _value(raw: dict, key: str) -> str | None:
    """A frame field as gdb gave it; None when missing or marked unreadable."""
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip() or _UNREADABLE.match(value.strip()):
        return None
    return value.strip()


def _number(text: str | None, base: int) -> int | None:
    try:
        return int(text, base) if text is not None else None
    except ValueError:
        return None


def signal_info(raw: RawSiginfo, pid: int | None) -> SignalInfo:
    """The model's view of a raw siginfo: named, with the sender or the address."""
    return SignalInfo(raw.signo, signal_name(raw.signo), raw.code, code_name(raw.signo, raw.code),
                      raw.address, raw.sender_pid, raw.sender_uid,
                      sender_is_self=raw.sender_pid is not None and raw.sender_pid == pid)


def parse_frame(raw: dict) -> dict:
    """The fields of a ``Frame`` from one MI frame record. A pc, function or
    line gdb could not read (<unavailable>, <optimized out>, absent) is
    None and named in ``unavailable``; no value makes it raise."""
    unavailable = []
    pc = _number(_value(raw, "addr"), 16)
    if pc is None:
        unavailable.append("pc")
    function = _value(raw, "func")
    if function is None and raw.get("func") not in (None, "??"):
        unavailable.append("function")  # gdb said it could not read it, not that there is no symbol
    file = _value(raw, "file") or _value(raw, "fullname")
    line = _number(_value(raw, "line"), 10)
    if file is not None and line is None:
        unavailable.append("line")
    return dict(index=_number(_value(raw, "level"), 10) or 0, pc=pc, function=function, module=None,
                build_id=None, offset=None, file=file, line=line, unavailable=tuple(unavailable))


def pick_registers(names: list, wanted: tuple[str, ...], read) -> tuple[tuple[str, str], ...]:
    """(name, value) of the registers ``wanted`` in that order, by gdb's
    numbering of ``names`` (-data-list-register-names); gdb's first
    REGISTERS when the architecture has no list. ``read(numbers)`` answers
    -data-list-register-values; a value gdb cannot read stays <unavailable>."""
    numbers = {name: i for i, name in enumerate(names) if isinstance(name, str) and name}
    if wanted:
        chosen = [numbers[n] for n in wanted if n in numbers]
    else:
        chosen = [i for i, name in enumerate(names[:REGISTERS]) if isinstance(name, str) and name]
    if not chosen:
        return ()
    values = {}
    for v in read(chosen).get("register-values", []):
        number = _number(v.get("number"), 10)
        if number is not None and 0 <= number < len(names):
            values[number] = v.get("value") or "<unavailable>"
    return tuple((names[i], values[i]) for i in chosen if i in values)


class _Probe:
    """What enrichers may ask of the core, in the crashing thread."""

    def __init__(self, gdb: Gdb, sel: str):
        self._gdb, self._sel = gdb, sel

    def evaluate(self, expression: str) -> str | None:
        found = self._gdb.try_mi(f"-data-evaluate-expression {self._sel} {mi_quote(expression)}")
        return found.get("value") if found else None

    def string(self, expression: str) -> str | None:
        return _Analyzer._string(self._gdb, expression, self._sel)

    def read(self, address: int, size: int) -> bytes | None:
        """``size`` bytes of the core's memory, or None when not all are there."""
        found = (self._gdb.try_mi(f"-data-read-memory-bytes {int(address):#x} {int(size)}") or {}).get("memory")
        try:
            data = bytes.fromhex(found[0]["contents"]) if found and len(found) == 1 else b""
        except (KeyError, TypeError, ValueError):
            return None
        return data if len(data) == size else None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "e": "\x1b"}


def parse_c_string(value: str) -> str | None:
    """gdb prints ``char *`` as ``0x55d0 "text\\n"...``: return the text.
    Long runs come as ``"ab", 'x' <repeats 30 times>, "cd"``."""
    m = _STRING_VALUE.match(value.strip())
    if not m:
        return None
    out = bytearray()
    for quoted, char, times in _PIECE.findall(m.group(1)):
        if quoted or not char:
            out.extend(_unescape(quoted[1:-1]))
        else:
            out.extend(_unescape(char[1:-1]) * int(times or 1))
    return out.decode("utf-8", "replace")


_PIECE = re.compile(r"""("(?:[^"\\]|\\.)*")|('(?:[^'\\]|\\.)+')(?: <repeats (\d+) times>)?""")


def _unescape(body: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n in "01234567":
                j = i + 1
                while j < len(body) and j < i + 4 and body[j] in "01234567":
                    j += 1
                out.append(int(body[i + 1:j], 8) & 0xFF)
                i = j
                continue
            out.extend(_ESCAPES.get(n, n).encode())
            i += 2
            continue
        out.extend(c.encode())
        i += 1
    return bytes(out)
