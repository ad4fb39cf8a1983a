"""A throwaway redis-server on a free loopback port, and a real
``coretriage worker`` consuming from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from servicekit import wait_listening


def start_redis(port: int) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (make test installs it)")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(proc, port, "redis-server", 60)
    except RuntimeError:
        proc.kill()
        raise
    return proc


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
