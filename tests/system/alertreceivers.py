"""Real alert receivers for tests: a webhook endpoint (http.server) and an
SMTP server (aiosmtpd, Debian's python3-aiosmtpd, in a subprocess)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Receiver:
    """A webhook endpoint: records every POST (headers, body); while ``hold``
    is clear, requests wait before they are answered."""

    def __init__(self):
        self.posts = []
        self.paths = []
        self.hold = threading.Event()
        self.hold.set()
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.paths.append(self.path)
                outer.posts.append((dict(self.headers), body))
                outer.got.set()
                outer.hold.wait(30)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_server(log: Path, timeout: float = 10.0):
    """Yield ``smtp://127.0.0.1:PORT`` of a running aiosmtpd that prints every
    message it gets to ``log``."""
    if not os.path.exists("/usr/lib/python3/dist-packages/aiosmtpd"):
        raise RuntimeError("aiosmtpd missing: apt-get install python3-aiosmtpd (make system-deps)")
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(["/usr/bin/python3", "-u", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"aiosmtpd did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield f"smtp://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
