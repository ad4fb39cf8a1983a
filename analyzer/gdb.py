"""The one place that owns a gdb process, spoken to in MI and parsed by pygdbmi.

gdb runs on untrusted cores: no init files (--nx), auto-load off, debuginfod
off (its debug files are fetched outside the sandbox and handed in), a memory limit through prlimit, and
a deadline on every command after which the process is killed; and, through
``analyzer.analyze``, inside the analysis sandbox (``EarlyGdb``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from analyzer.errors import CoretriageError


class GdbError(CoretriageError):
    """gdb answered ^error; the message is gdb's own."""


class GdbTimeout(GdbError):
    pass


@dataclass(frozen=True)
class GdbBudget:
    """What one gdb session may spend (not the collector's capture limits
    nor a process's core ulimits)."""

    timeout: float = 120.0  # whole session, seconds
    memory: int = 4 << 30  # address space, bytes


MULTIARCH = "gdb-multiarch"


def default_gdb() -> str:
    """gdb-multiarch when it is installed, else the host's gdb. gdb-multiarch
    reads the cores of every architecture (an aarch64 core on an x86-64
    worker) and the host's own as fast as its gdb does (1.02 times as long
    on the bench's cores): one binary, chosen before the core is known, so
    a session can start early. The analysis says when a core needs it."""
    return MULTIARCH if shutil.which(MULTIARCH) else "gdb"


def mi_quote(text: str) -> str:
    """Quote a path or expression as an MI c-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Gdb:
    """``with Gdb() as g: g.mi("-thread-info")``

    Owns the gdb process and its pipes; each MI line is parsed by pygdbmi's
    pure ``parse_response``. Reading blocks on the pipe with a deadline
    instead of polling, so a command costs what gdb takes to answer it.
    """

    def __init__(self, budget: GdbBudget = GdbBudget(), gdb: str | None = None):
        self.budget = budget
        self.gdb = gdb or default_gdb()
        self._tokens = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self._deadline = 0.0

    def command_line(self) -> list[str]:
        path = shutil.which(self.gdb)
        if path is None:
            raise GdbError(f"{self.gdb} is not installed (apt-get install {self.gdb})")
        argv = [path, "--nx", "--quiet", "--interpreter=mi3",
                "-iex", "set auto-load off",
                "-iex", "set debuginfod enabled off",
                "-iex", "set confirm off",
                "-iex", "set pagination off",
                "-iex", "set width 0",
                "-iex", "set print elements 4096",
                "-iex", "set print frame-arguments none",
                "-iex", "set max-value-size 1048576"]
        prlimit = shutil.which("prlimit")
        if prlimit:
            argv = [prlimit, f"--as={self.budget.memory}", "--core=0", "--", *argv]
        return argv

    def start(self, **spawn) -> "Gdb":
        """Start gdb now; the budget's deadline runs from here. ``spawn``:
        more ``subprocess.Popen`` arguments (the sandbox's user and groups)."""
        if self._proc is None:
            self._deadline = time.monotonic() + self.budget.timeout
            self._proc = subprocess.Popen(self.command_line(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, start_new_session=True, **spawn)
        return self

    def remaining(self) -> float:
        """Seconds left of the session's budget (all of it before start)."""
        if not self._deadline:
            return self.budget.timeout
        return max(0.0, self._deadline - time.monotonic())

    @property
    def pid(self) -> int | None:
        """gdb's process id while it runs (prlimit execs gdb: the same process)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> "Gdb":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill gdb (and anything it started): it only ever reads, so it has
        nothing to save, and its own exit, freeing every symbol table it
        loaded, took a tenth of a small core's analysis."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def _line(self) -> bytes:
        """One line of gdb's output, within the session's deadline."""
        while b"\n" not in self._buffer:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise GdbTimeout(f"gdb did not finish within {self.budget.timeout:g} s")
            ready, _, _ = select.select([self._proc.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._proc.stdout.fileno(), 1 << 16)
            if not chunk:
                self.close()
                raise GdbError("gdb exited unexpectedly")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def run(self, command: str) -> tuple[dict, list[str]]:
        """Send one MI (or CLI) command; return its result payload and the
        console text gdb printed while running it."""
        from pygdbmi.gdbmiparser import parse_response

        if self._proc is None:
            raise GdbError("gdb is not running")
        token = next(self._tokens)
        try:
            self._proc.stdin.write(f"{token}{command}\n".encode())
            self._proc.stdin.flush()
        except OSError:
            self.close()
            raise GdbError("gdb exited unexpectedly") from None
        console: list[str] = []
        while True:
            text = self._line().decode("utf-8", "replace").rstrip("\r")
            if not text or text == "(gdb) ":
                continue
            rec = parse_response(text)
            if rec["type"] == "console" and rec.get("payload"):
                console.append(rec["payload"])
            elif rec["type"] == "result" and rec.get("token") == token:
                if rec["message"] == "error":
                    payload = rec.get("payload") or {}
                    raise GdbError(str(payload.get("msg", "error")).strip())
                return rec.get("payload") or {}, console

    def mi(self, command: str) -> dict:
        return self.run(command)[0]

    def console(self, command: str) -> str:
        return "".join(self.run(f"-interpreter-exec console {mi_quote(command)}")[1])

    def try_mi(self, command: str) -> dict | None:
        """A command whose failure is an answer (no such symbol, memory not
        in the core) rather than a broken analysis."""
        try:
            return self.mi(command)
        except GdbTimeout:
            raise
        except GdbError:
            return None


class EarlyGdb:
    """The analysis sandbox's ``prepare`` (``analyzer.sandbox``): gdb started
    as the sandbox user before the job arrives, so its start-up overlaps the
    rest of the sandbox's. ``facts`` are what the kernel said of gdb just
    before it was closed: its confinement after reading everything, and its
    peak memory."""

    def __init__(self, budget: tuple[float, int], spawn: dict):
        self.gdb = Gdb(GdbBudget(*budget))
        self.seen: dict = {}
        close = self.gdb.close

        def closing():
            if self.gdb.pid and not self.seen:
                from analyzer.sandbox import process_facts

                self.seen = process_facts(self.gdb.pid)
            close()

        self.gdb.close = closing
        try:
            self.gdb.start(**spawn)
        except GdbError:
            pass  # not installed: the analysis reports it

    def facts(self) -> dict:
        return {"gdb": self.seen} if self.seen else {}
