"""The real web server, as an operator starts it: ``coretriage --data-dir DIR
web --port PORT`` (or gunicorn) in a subprocess, on a free loopback port,
always stopped."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from servicekit import free_port, stop, wait_listening

COMMAND = Path(sys.executable).parent / "coretriage"


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """Run the installed ``coretriage`` command; fail with its stderr."""
    if not COMMAND.exists():
        raise RuntimeError(f"{COMMAND} is missing: install the project (pip install -e .)")
    done = subprocess.run([COMMAND, "--data-dir", str(data_dir), *args], input=stdin, text=True,
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"coretriage {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def add_user(data_dir: Path, name: str, role: str, password: str) -> None:
    cli(data_dir, "user", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")


@contextlib.contextmanager
def web_server(data_dir: Path, log: Path, timeout: float = 120.0, command: Path = COMMAND, cwd=None,
               port: int | None = None, args: tuple[str, ...] = ()):
    """Yield the base URL (``http://127.0.0.1:PORT``) of a running server
    (on ``port`` when given: a server started again where hosts expect it);
    ``args`` go after ``web --port PORT`` (e.g. ``--workers 2``)."""
    port = port or free_port()
    with _serving([command, "--data-dir", str(data_dir), "web", "--port", str(port), *args], port, log, timeout,
                  cwd=cwd) as url:
        yield url


@contextlib.contextmanager
def gunicorn_server(data_dir: Path, log: Path, workers: int = 2, timeout: float = 120.0):
    """The documented production command: ``gunicorn 'webui:create_app()'``,
    the data dir in CORETRIAGE_DATA_DIR."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        raise RuntimeError(f"{gunicorn} is missing: install the project's web extra (pip install -e '.[web]')")
    port = free_port()
    env = dict(os.environ, CORETRIAGE_DATA_DIR=str(data_dir))
    with _serving([gunicorn, "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "webui:create_app()"],
                  port, log, timeout, env=env, cwd="/") as url:
        yield url


@contextlib.contextmanager
def _serving(argv, port: int, log: Path, timeout: float, env=None, cwd=None):
    with open(log, "wb") as out:
        server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                  env=env)
    try:
        wait_listening(server, port, "the web server", timeout, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)
