"""A central coretriage and hosts that upload to it, for the system tests:
the real web server (``webserver.web_server``) on its own data dir, hosts
registered with ``coretriage host add``, and ``coretriage collector run``
subprocesses with ``server_url`` and ``server_token``."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from webserver import cli


def add_host(central: Path, name: str) -> str:
    """The token ``host add`` prints alone on its last line."""
    return cli(central, "host", "add", name).strip().splitlines()[-1]


def host_settings(data: Path, url: str, token: str, **extra) -> None:
    """``server_url``/``server_token`` (and more) in the host's coretriage.toml."""
    path = data / "coretriage.toml"
    old = path.read_text() if path.exists() else ""
    lines = [f'server_url = "{url}"', f'server_token = "{token}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path.write_text(old + "\n".join(lines) + "\n")


def start_collector(data: Path, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data), "collector", "run"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        out.close()


def stop_collector(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def collector(data: Path, log: Path):
    proc = start_collector(data, log)
    try:
        yield proc
    finally:
        stop_collector(proc)


def central_crashes(central: Path) -> list:
    """Every crash the central store holds (CrashRow), oldest first."""
    from coretriage.config import load_config
    from coretriage.store import Store

    store = Store(load_config(central).database_url)
    try:
        return sorted((store.crash(cid) for cid, _ in store.crash_ids()), key=lambda c: c.crashed_at)
    finally:
        store.close()


def wait_crashes(central: Path, n: int, timeout: float = 120.0, alive=()) -> list:
    deadline = time.monotonic() + timeout
    found: list = []
    while time.monotonic() < deadline:
        found = central_crashes(central)
        if len(found) >= n:
            return found
        for proc in alive:
            assert proc.poll() is None, f"a process died ({proc.returncode})"
        time.sleep(0.5)
    raise AssertionError(f"{len(found)} of {n} crashes reached the central server in {timeout:.0f} s")
