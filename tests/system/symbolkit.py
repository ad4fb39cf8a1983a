"""Test helpers for symbols: a program built here with its debug info split
off and stripped, crashed for real; a dbgsym ``.deb`` built with
``dpkg-deb --build``; a real elfutils ``debuginfod`` serving a directory;
and servers that hang or answer garbage."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import crashkit
from servicekit import free_port, stop


@dataclass(frozen=True)
class SplitBuild:
    exe: Path  # stripped
    debug: Path  # objcopy --only-keep-debug
    build_id: str


def build_id_of(path: Path) -> str:
    out = subprocess.run(["eu-readelf", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    raise AssertionError(f"no build-id in {path}")


def split_build(workdir: Path, name: str = "segv", flags: tuple[str, ...] = ()) -> SplitBuild:
    """segv.c built with -g, its debug info split off, the program stripped."""
    exe = workdir / name
    crashkit.compile_c("segv.c", exe, flags=flags)
    debug = workdir / f"{name}.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(exe), str(debug)], check=True)
    subprocess.run(["strip", "--strip-all", str(exe)], check=True)
    return SplitBuild(exe, debug, build_id_of(exe))


def crash(build: SplitBuild, cores: Path, variant: int = 0) -> Path:
    return crashkit.crash([str(build.exe), "GET /" + "x" * variant], cores, expect_signal=signal.SIGSEGV)


def dbgsym_deb(workdir: Path, build: SplitBuild, name: str = "segv-dbgsym") -> Path:
    """A Debian dbgsym package as Debian lays one out: the debug file at
    usr/lib/debug/.build-id/xx/rest.debug."""
    root = workdir / f"{name}-root"
    target = root / "usr/lib/debug/.build-id" / build.build_id[:2] / f"{build.build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    shutil.copy(build.debug, target)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@example.org>\n"
        "Description: debug symbols for segv\nSection: debug\nPriority: optional\n")
    out = workdir / f"{name}_1.0_amd64.ddeb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(out)], check=True,
                   capture_output=True)
    return out


@contextlib.contextmanager
def debuginfod_server(directory: Path, workdir: Path):
    """elfutils' debuginfod serving the ELF/DWARF files in ``directory``;
    yields its URL once it has indexed them."""
    port = free_port()
    db = workdir / "debuginfod.sqlite"
    log = open(workdir / "debuginfod.log", "wb")
    proc = subprocess.Popen(["debuginfod", "-p", str(port), "-d", str(db), "-F", "-t", "1", "-g", "0",
                             str(directory)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, proc
    finally:
        stop(proc)
        log.close()


@contextlib.contextmanager
def serving_debug_file(build: SplitBuild, workdir: Path):
    """debuginfod serving ``build``'s split debug file (copied to
    ``workdir/served``); yields its URL once it serves that file."""
    served = workdir / "served"
    served.mkdir()
    (served / "segv.debug").write_bytes(build.debug.read_bytes())
    with debuginfod_server(served, workdir) as (url, _):
        wait_served(url, build.build_id)
        yield url


def wait_served(url: str, build_id: str, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/buildid/{build_id}/debuginfo", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"debuginfod at {url} never served {build_id}")


@contextlib.contextmanager
def bad_server(kind: str):
    """A TCP server on localhost that accepts and then ``hang``s (never
    answers) or answers ``garbage`` (bytes that are not HTTP) or ``junk200``
    (HTTP 200 with bytes that are not an ELF file)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    held = []

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)
            if kind == "garbage":
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"\x00\xffnot http at all\r\n\r\n" * 50)
                    conn.close()
            elif kind == "junk200":
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    body = b"this is not an ELF file" * 10
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                                 + body)
                    conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for c in held:
            with contextlib.suppress(OSError):
                c.close()
        listener.close()
