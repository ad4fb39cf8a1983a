"""Python programs that crash for real, for the Python system tests and the
bench: a C extension module built here that segfaults when a Python function
calls it, and the services (uwsgi, gunicorn, Celery) that run such code. The
plain ctypes scripts are sample-cores/recipes/python.py's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from servicekit import free_port, stop

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


EMBEDDER = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* a program of its own that runs a Python script in libpython */
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    FILE *script = fopen(argv[1], "r");
    if (!script) return 2;
    Py_Initialize();
    int rc = PyRun_SimpleFile(script, argv[1]);
    Py_Finalize();
    return rc;
}
"""

QUOTES_APP = """\
import ctypes


def price_quote(n):
    return ctypes.string_at(n)


price_quote(0)
"""


def build_embedder(directory: Path) -> Path:
    """``quoter``: a C program embedding Debian's libpython3.11 (python3-config --embed)."""
    flags = subprocess.run(["/usr/bin/python3-config", "--embed", "--cflags", "--ldflags"], capture_output=True,
                           text=True, check=True).stdout.split()
    src = write(directory, "quoter.c", EMBEDDER)
    out = directory / "quoter"
    subprocess.run(["gcc", "-o", str(out), str(src), *flags], check=True)
    return out


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


# gunicorn and Celery run in this venv, as a pip-installed service does; the
# core names the interpreter behind the venv's link (a CPython built from
# source, with its symbols)
VENV_PYTHON = sys.executable
SERVICE_PYTHON = os.path.realpath(VENV_PYTHON)

PROGRAMS = ("/usr/bin/python3.11", "/usr/bin/uwsgi-core", SERVICE_PYTHON)


def ours(store, also: tuple[str, ...] = ()) -> list:
    """The stored crashes of the programs these tests crash (and of the
    programs ``also`` names): the machine is shared, and another test's
    crash may reach the handler meanwhile."""
    rows = [store.crash(crash_id) for crash_id, _ in store.crash_ids()]
    return [r for r in rows if r.executable in PROGRAMS or r.executable in also]


def collect(data_dir: Path, count: int, crash, timeout: float = 180.0, also: tuple[str, ...] = ()):
    """Run the collector (analysis here) while ``crash()`` crashes programs,
    until ``count`` crashes of ours (``also``: more programs) are stored; the store."""
    from collecting import collecting

    with collecting(data_dir) as (_, store):
        crash()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(ours(store, also)) < count:
            time.sleep(0.2)
    assert len(ours(store, also)) == count, f"{len(ours(store, also))} crashes of ours stored, not {count}"
    return store


WSGI_APP = """\
import billing


def render_invoice(environ):
    return billing.invoice_total()


def application(environ, start_response):
    if environ["PATH_INFO"] == "/invoice/crash":
        render_invoice(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

NGINX_CONF = """\
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass 127.0.0.1:{upstream};
        }}
    }}
}}
"""


def uwsgi_argv(directory: Path, port: int, use_abort: bool = True) -> list[str]:
    """uwsgi's master and two workers serving WSGI_APP, seed 004's way."""
    argv = ["/usr/bin/uwsgi", "--plugin", "python3", "--master", "--processes", "2",
            "--socket", f"127.0.0.1:{port}", "--pythonpath", str(directory), "--wsgi-file",
            str(directory / "wsgiapp.py"), "--logto", str(directory / "uwsgi.log"), "--die-on-term"]
    return argv + (["--use-abort"] if use_abort else [])


@contextlib.contextmanager
def served(directory: Path, use_abort: bool = True):
    """nginx in front of uwsgi (uwsgi_pass) serving WSGI_APP with the billing
    extension: yields nginx's base URL; both stopped after."""
    import crashkit

    build_extension(directory)
    write(directory, "wsgiapp.py", WSGI_APP)
    upstream, port = free_port(), free_port()
    conf = write(directory, "nginx.conf", NGINX_CONF.format(dir=directory, port=port, upstream=upstream))
    procs = []
    try:
        procs.append(subprocess.Popen(uwsgi_argv(directory, upstream, use_abort), preexec_fn=crashkit.allow_cores,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=directory, env={"PATH": "/usr/bin:/bin"}))
        procs.append(subprocess.Popen(["/usr/sbin/nginx", "-c", str(conf), "-p", str(directory)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        _up(base, procs, directory / "uwsgi.log", "uwsgi behind nginx")  # a request goes through both
        yield base
    finally:
        for p in procs:
            stop(p, 15)


def request(url: str) -> int:
    """The HTTP status of a GET (502 when the worker died behind a proxy;
    0 when the server that died was the one answering: no answer at all)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (ConnectionError, urllib.error.URLError):
        return 0


REPORT_APP = """\
import ctypes


def render_report(environ):
    return ctypes.string_at(0)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/report/crash":
        render_report(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@contextlib.contextmanager
def gunicorn_served(directory: Path):
    """gunicorn (one sync worker, forked by its arbiter) serving REPORT_APP;
    yields its base URL; stopped after."""

    write(directory, "reportapp.py", REPORT_APP)
    port = free_port()
    proc = subprocess.Popen([VENV_PYTHON, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                             "--log-file", str(directory / "gunicorn.log"), "reportapp:application"],
                            preexec_fn=_allow_cores, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=directory, env={"PATH": "/usr/bin:/bin"})
    try:
        _up(f"http://127.0.0.1:{port}", [proc], directory / "gunicorn.log", "gunicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc, 30)


JOBS_APP = """\
import ctypes
import os

from celery import Celery

app = Celery("jobs", broker=os.environ["BROKER_URL"])


def build_rows(ledger):
    return ctypes.string_at(ledger)


@app.task
def export_ledger(ledger):
    return build_rows(ledger)
"""


@contextlib.contextmanager
def celery_worker(directory: Path, broker: str):
    """A Celery worker (prefork pool of one: the task runs in a forked
    child) for JOBS_APP's tasks on the ``ledger`` queue; stopped after."""
    write(directory, "jobs.py", JOBS_APP)
    log = directory / "celery.log"
    proc = subprocess.Popen([VENV_PYTHON, "-m", "celery", "-A", "jobs", "worker", "--pool", "prefork",
                             "--concurrency", "1", "--queues", "ledger", "--without-gossip", "--without-mingle",
                             "--without-heartbeat", "--loglevel", "INFO", "--logfile", str(log)],
                            preexec_fn=_allow_cores, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=directory,
                            env={"PATH": "/usr/bin:/bin", "BROKER_URL": broker, "PYTHONPATH": str(directory)})
    try:
        deadline = time.monotonic() + 120
        while "ready." not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"the Celery worker did not start: "
                                     f"{log.read_text()[-2000:] if log.exists() else 'no log'}")
            time.sleep(0.1)
        yield log
    finally:
        stop(proc, 30)


def send_task(directory: Path, broker: str, name: str, *args) -> None:
    """Queue a task on the ``ledger`` queue, as the application would."""
    subprocess.run([VENV_PYTHON, "-c", f"import jobs; jobs.{name}.apply_async({args!r}, queue='ledger')"],
                   cwd=directory, env={"PATH": "/usr/bin:/bin", "BROKER_URL": broker}, check=True, timeout=60,
                   stdout=subprocess.DEVNULL)


def _allow_cores():
    import crashkit

    crashkit.allow_cores()


def _up(base: str, procs: list[subprocess.Popen], log: Path, what: str) -> None:
    """Until ``base``/ answers "ok"; fails with ``log``'s tail if one of
    ``procs`` exits or 120 s pass first (a loaded machine starts them slowly)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=5) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise AssertionError(f"{what} at {base} did not answer: "
                                 f"{log.read_text()[-2000:] if log.exists() else 'no log'}")
        time.sleep(0.1)

