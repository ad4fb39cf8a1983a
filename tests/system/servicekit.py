"""A local service a test (or bench) runs: a free loopback port for it to
listen on, waiting until it does, and stopping it when done."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path


_given: set[int] = set()


def free_port() -> int:
    """A loopback port free now, never one this process was given before: two
    asked for in a row (before either server binds) could otherwise be the same."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def wait_listening(proc: subprocess.Popen, port: int, what: str, timeout: float, log: Path | None = None) -> None:
    """Until something accepts a connection on 127.0.0.1:``port``; a
    RuntimeError naming ``what`` (with the tail of ``log``) if ``proc``
    exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited ({proc.returncode})" if proc.returncode is not None else f"did not listen in {timeout:.0f} s"
            raise RuntimeError(f"{what} on port {port} {why}" + (f":\n{log.read_text()[-2000:]}" if log else ""))
        time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
