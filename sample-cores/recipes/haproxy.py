"""The real Debian HAProxy segfaults in a native Lua module while serving HTTP.

/usr/sbin/haproxy (built with USE_LUA=1 against the shared liblua5.3) loads
src/haproxy_crash.lua, whose http-req action hands the request path to the
native module buggy.so (src/haproxy_buggy.c). The module's route table has a
NULL auth policy for /webhook/..., which it dereferences: SIGSEGV in the
crashing worker thread, with the module's frames on top, then liblua's, then
HAProxy's (hlua_* and the HTTP analysers).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import crashkit
from crashkit import Sample

HAPROXY = Path("/usr/sbin/haproxy")
LUA_INCLUDE = Path("/usr/include/lua5.3")
URI = "/webhook/orders/42"
TOP_FUNCTION = "route_auth_header"
START_TIMEOUT = 15.0
DEATH_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log: Path) -> str:
    try:
        return f"{log.read_text(errors='replace')[-1500:]} (full log: {log})"
    except OSError:
        return f"(no log at {log})"


def _wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited {proc.returncode} before listening on "
                               f"127.0.0.1:{port}: {_log_tail(log)!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"haproxy did not listen on 127.0.0.1:{port} within "
                       f"{START_TIMEOUT:.0f}s: {_log_tail(log)!r}")


def send_request(port: int, uri: str) -> bytes:
    """One HTTP/1.1 request; the connection is expected to die with haproxy."""
    request = (f"POST {uri} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Content-Type: application/json\r\nContent-Length: 2\r\nAccept-Encoding: gzip\r\n"
               "Connection: close\r\n\r\n{}").encode()
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(DEATH_TIMEOUT)
            s.sendall(request)
            while chunk := s.recv(4096):
                reply += chunk
    except OSError:
        pass  # reset or timeout: haproxy died under us, as intended
    return reply


def build_with_debug_info() -> Path:
    """HAProxy from Debian's source package (its patches applied), built
    with -g and the stock package's main options (Lua, OpenSSL, zlib),
    cached by version: the stock /usr/sbin/haproxy has no debug info."""
    import debsrc

    tree = debsrc.source_tree("haproxy", debian_patches=True)
    exe = tree / "haproxy"
    if not exe.exists():
        subprocess.run(["make", "-j2", "TARGET=linux-glibc", "USE_LUA=1", f"LUA_INC={LUA_INCLUDE}",
                        "LUA_LIB_NAME=lua5.3", "USE_ZLIB=1", "USE_OPENSSL=1", "CPU_CFLAGS=-O2", "DEBUG_CFLAGS=-g"],
                       cwd=tree, check=True, capture_output=True, timeout=3600)
    return exe


def make(workdir: Path, haproxy: Path = HAPROXY) -> Sample:
    """Crash ``haproxy`` (the stock Debian build unless another is given)."""
    crashkit.need("gcc", str(haproxy))
    if not (LUA_INCLUDE / "lua.h").exists():
        raise RuntimeError(f"missing {LUA_INCLUDE}/lua.h (apt-get install liblua5.3-dev)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    try:
        module = crashkit.compile_c(
            "haproxy_buggy.c", workdir / "lua" / "buggy.so",
            flags=("-shared", "-fPIC", f"-I{LUA_INCLUDE}"))
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"building buggy.so failed: {e.stderr.decode(errors='replace')}") from e

    lua_file = workdir / "haproxy_crash.lua"
    shutil.copyfile(crashkit.SRC / "haproxy_crash.lua", lua_file)
    port = _free_port()
    config = (crashkit.SRC / "haproxy.cfg.in").read_text()
    for key, value in {"@MODULE_DIR@": module.parent, "@LUA_FILE@": lua_file,
                       "@PORT@": port}.items():
        config = config.replace(key, str(value))
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(config)
    log = workdir / "haproxy.log"

    with crashkit.cores_into(workdir / "cores") as cores, open(log, "wb") as out:
        for stale in cores.glob("core.*"):
            stale.unlink()
        # -db: foreground, no master-worker, so the pid we start is the one
        # that crashes. cwd is the cores dir (writable) in case the pattern
        # is ever relative.
        proc = subprocess.Popen([str(haproxy), "-db", "-f", str(cfg)],
                                preexec_fn=crashkit.allow_cores, cwd=cores,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            _wait_listening(proc, port, log)
            reply = send_request(port, URI)
            try:
                proc.wait(timeout=DEATH_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"haproxy survived POST {URI} for {DEATH_TIMEOUT:.0f}s "
                                   f"(reply {reply[:200]!r}): {_log_tail(log)!r}") from None
            if proc.returncode != -signal.SIGSEGV:
                raise RuntimeError(f"haproxy exited {proc.returncode}, expected SIGSEGV "
                                   f"(reply {reply[:200]!r}): {_log_tail(log)!r}")
            core = crashkit.wait_for_core(cores, proc.pid)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    return Sample(
        name="haproxy",
        core=core,
        exe=haproxy,
        expected_signal="SIGSEGV",
        extra={"uri": URI, "top_function": TOP_FUNCTION},
    )
