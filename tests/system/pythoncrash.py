"""Python programs that crash for real, for the Python system tests and the
bench: a script using ctypes, and a C extension module built here that
segfaults when a Python function calls it."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

PYTHON = "/usr/bin/python3"  # Debian's interpreter, as a service on the host runs it

EXTENSION = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* writes through a pointer it was never given: the bug under test */
static PyObject *invoice_total(PyObject *self, PyObject *args) {
    volatile long *lines = (volatile long *)(uintptr_t)0x10;
    *lines = 42;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"invoice_total", invoice_total, METH_NOARGS, "crash"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "billing", NULL, -1, methods};

PyMODINIT_FUNC PyInit_billing(void) { return PyModule_Create(&module); }
"""


def build_extension(directory: Path) -> Path:
    """``billing`` (billing*.so) in ``directory``, built with Debian's python3 headers."""
    include = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    suffix = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    src = directory / "billing.c"
    src.write_text(EXTENSION)
    out = directory / f"billing{suffix}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-g", "-O0", f"-I{include}", "-o", str(out), str(src)], check=True)
    return out


CTYPES_APP = """\
import ctypes


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


if __name__ == "__main__":
    import sys
    if sys.argv[1] == "batch":
        batch_job()
    else:
        handle_request(sys.argv[1])
"""

EXTENSION_APP = """\
import sys
sys.path.insert(0, sys.argv[1])
import billing


def render_invoice():
    return billing.invoice_total()


def main():
    render_invoice()


main()
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that contains ``needle`` (the first)."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in the program")


def collect(data_dir: Path, count: int, crash, timeout: float = 180.0):
    """Run the collector (analysis here) while ``crash()`` crashes programs,
    until ``count`` crashes are stored; the store."""
    from collector.watch import Collector
    from coretriage.config import load_config
    from coretriage.store import Store
    from coretriage.wiring import Wiring

    config = load_config(data_dir)
    store = Store(config.database_url)
    stop = threading.Event()
    collector = Collector(config.spool_dir, Wiring(config).submit(), rescan=0.5)
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        crash()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(store.crash_ids()) < count:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert len(store.crash_ids()) == count, f"{len(store.crash_ids())} crashes stored, not {count}"
    return store

