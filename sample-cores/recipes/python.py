"""Python programs that segfault in native code, crashed for real with
Debian's python3: the analysis must read their Python stacks.

``RECIPES[name](workdir, variant)`` writes the script (once per workdir) and
crashes it; ``variant`` changes the input, never the bug. ``extra["script"]``
is the script's path and ``extra["source"]`` its text, for lines
(``line_of``). The system tests crash the same scripts (INVOICES, PAYMENTS)
through the kernel's handler.
"""

from __future__ import annotations

import signal
from pathlib import Path

import crashkit
from crashkit import Sample

PYTHON = "/usr/bin/python3"

INVOICES = """\
import ctypes
import sys
import threading


def load_invoice(n):
    return ctypes.string_at(n)


def load_receipt(n):
    return ctypes.string_at(n)


def handle_request(kind):
    if kind == "receipt":
        return load_receipt(0)
    return load_invoice(0)


def batch_job():
    return load_invoice(0)


def parse_record(record):
    return ctypes.string_at(record)


def worker_loop(records):
    for record in records:
        parse_record(record)


def wait_for_workers(done):
    done.wait()


def threaded(variant):
    done = threading.Event()
    worker = threading.Thread(target=worker_loop, args=([0] * (variant + 1),), name="importer")
    worker.start()
    wait_for_workers(done)


if __name__ == "__main__":
    if sys.argv[1] == "threads":
        threaded(int(sys.argv[2]))
    elif sys.argv[1] == "batch":
        batch_job()
    else:
        handle_request(sys.argv[1])
"""


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that contains ``needle`` (the first)."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in the program")


def _script(workdir: Path) -> Path:
    path = workdir / "py" / "invoices.py"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(INVOICES)
    return path


def _sample(name: str, workdir: Path, argv: list[str], signature: str, **extra) -> Sample:
    crashkit.need(PYTHON)
    script = _script(workdir)
    core = crashkit.crash([PYTHON, *[str(script) if a == "SCRIPT" else a for a in argv]],
                          workdir / "cores", expect_signal=signal.SIGSEGV, env={})
    return Sample(name, core, Path(PYTHON), expected_signature=signature, expected_signal="SIGSEGV",
                  extra={"script": str(script), "source": INVOICES, **extra})


def python_ctypes(workdir: Path, variant: int = 0) -> Sample:
    kind = ("invoice", "receipt")[variant % 2]
    return _sample("python_ctypes", workdir, ["SCRIPT", kind],
                   f"strlen | ctypes.string_at | invoices.load_{kind}")


def python_faulthandler(workdir: Path, variant: int = 0) -> Sample:
    """faulthandler catches the SIGSEGV, prints the traceback and raises it again."""
    return _sample("python_faulthandler", workdir, ["-X", "faulthandler", "SCRIPT", "invoice"],
                   "strlen | ctypes.string_at | invoices.load_invoice")


def python_threads(workdir: Path, variant: int = 0) -> Sample:
    """A worker thread crashes while the main thread waits in Python."""
    return _sample("python_threads", workdir, ["SCRIPT", "threads", str(variant)],
                   "strlen | ctypes.string_at | invoices.parse_record")


PAYMENTS = """\
import ctypes


def charge(card_token, amount):
    customer = "acme"
    dsn = "postgres://billing:hunter2@db/invoices"
    return ctypes.string_at(0)


charge("tok_live_4242", 1250)
"""


def python_locals(workdir: Path, variant: int = 0) -> Sample:
    """A crash whose frame holds secrets in its arguments and locals."""
    crashkit.need(PYTHON)
    script = workdir / "py" / "payments.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(PAYMENTS)
    core = crashkit.crash([PYTHON, str(script)], workdir / "cores", expect_signal=signal.SIGSEGV, env={})
    return Sample("python_locals", core, Path(PYTHON), expected_signature="strlen | ctypes.string_at | payments.charge",
                  expected_signal="SIGSEGV", extra={"script": str(script), "source": PAYMENTS})


RECIPES = {f.__name__: f for f in (python_ctypes, python_faulthandler, python_threads, python_locals)}
