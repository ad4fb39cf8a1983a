"""The one place that owns a gdb process, driven through pygdbmi.

gdb runs on untrusted cores: no init files (--nx), auto-load off, debuginfod
off unless DEBUGINFOD_URLS is configured, a memory limit through prlimit, and
a deadline on every command after which the process is killed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass


class GdbError(Exception):
    """gdb answered ^error; the message is gdb's own."""


class GdbTimeout(GdbError):
    pass


@dataclass(frozen=True)
class GdbLimits:
    timeout: float = 120.0  # whole session, seconds
    memory: int = 4 << 30  # address space, bytes


def mi_quote(text: str) -> str:
    """Quote a path or expression as an MI c-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Gdb:
    """``with Gdb() as g: g.mi("-thread-info")``"""

    def __init__(self, limits: GdbLimits = GdbLimits(), gdb: str = "gdb"):
        self.limits = limits
        self.gdb = gdb
        self._tokens = itertools.count(1)
        self._ctl = None
        self._deadline = 0.0

    def command_line(self) -> list[str]:
        path = shutil.which(self.gdb)
        if path is None:
            raise GdbError("gdb is not installed (apt-get install gdb)")
        debuginfod = "on" if os.environ.get("DEBUGINFOD_URLS") else "off"
        argv = [path, "--nx", "--quiet", "--interpreter=mi3",
                "-iex", "set auto-load off",
                "-iex", f"set debuginfod enabled {debuginfod}",
                "-iex", "set confirm off",
                "-iex", "set pagination off",
                "-iex", "set width 0",
                "-iex", "set print elements 4096",
                "-iex", "set print frame-arguments none",
                "-iex", "set max-value-size 1048576"]
        prlimit = shutil.which("prlimit")
        if prlimit:
            argv = [prlimit, f"--as={self.limits.memory}", "--core=0", "--", *argv]
        return argv

    def __enter__(self) -> "Gdb":
        from pygdbmi.gdbcontroller import GdbController  # imported only when gdb is needed

        self._deadline = time.monotonic() + self.limits.timeout
        self._ctl = GdbController(command=self.command_line(),
                                  time_to_check_for_additional_output_sec=0.001)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._ctl is not None:
            try:
                self._ctl.exit()
            except Exception:  # gdb may already be gone; nothing to save
                pass
            self._ctl = None

    def run(self, command: str) -> tuple[dict, list[str]]:
        """Send one MI (or CLI) command; return its result payload and the
        console text gdb printed while running it."""
        if self._ctl is None:
            raise GdbError("gdb is not running")
        token = next(self._tokens)
        self._ctl.write(f"{token}{command}", read_response=False)
        console: list[str] = []
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise GdbTimeout(f"gdb did not finish within {self.limits.timeout:g} s")
            try:
                records = self._ctl.get_gdb_response(timeout_sec=min(remaining, 1.0),
                                                     raise_error_on_timeout=False)
            except Exception as exc:  # pygdbmi raises when gdb died
                self.close()
                raise GdbError(f"gdb stopped: {exc}") from None
            if not records and self._ctl.gdb_process.poll() is not None:
                self.close()
                raise GdbError("gdb exited unexpectedly")
            for rec in records:
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
