"""What the pipe handler sends to syslog (/dev/log): a socket of our own
when no syslog daemon runs, else the journal. ``syslog`` is the fixture."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest


class SyslogCapture:
    """Lines sent to /dev/log: a socket of our own when no syslog daemon runs,
    else the journal."""

    def __init__(self):
        self.sock = None
        self.lines: list[str] = []
        self.since = time.time()

    def wait_for(self, *needles: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if all(n in line for n in needles):
                    return line
            if self.sock is not None:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    self.lines.append(self.sock.recv(65536).decode("utf-8", "replace"))
                except TimeoutError:
                    pass
            else:
                out = subprocess.run(["journalctl", "-q", "-o", "cat", "-t", "coretriage-collector",
                                      "--since", f"@{int(self.since)}"], capture_output=True, text=True)
                self.lines = out.stdout.splitlines()
                time.sleep(0.2)
        raise AssertionError(f"no syslog line with {needles}; got {self.lines}")


@pytest.fixture
def syslog():
    cap = SyslogCapture()
    path = "/dev/log"
    if os.path.lexists(path):
        if shutil.which("journalctl") is None:
            pytest.fail("/dev/log belongs to a syslog daemon without journalctl: cannot read the handler's lines")
        yield cap
        return
    cap.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    cap.sock.bind(path)
    try:
        yield cap
    finally:
        cap.sock.close()
        os.unlink(path)
