"""A throwaway redis-server on a free loopback port, and a real
``coretriage worker`` consuming from it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def start_redis(port: int) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (make test installs it)")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)


def start_worker(data_dir: Path, log: Path | None = None, session: bool = False,
                 **settings: str) -> subprocess.Popen:
    """``coretriage worker`` for ``data_dir``; settings become CORETRIAGE_<NAME> variables.
    ``log``: a file for its output; ``session``: in a process group of its
    own (the pool and alert sender with it), for a test that kills it whole."""
    env = {**os.environ, **{f"CORETRIAGE_{k.upper()}": v for k, v in settings.items()}}
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data_dir), "worker",
                                 "--concurrency", "1"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=session)
    finally:
        if log is not None:
            out.close()
