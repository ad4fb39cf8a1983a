"""Real alert receivers for tests: a webhook endpoint (http.server) and an
SMTP server (aiosmtpd, Debian's python3-aiosmtpd, in a subprocess)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from servicekit import free_port, wait_listening

# one pass of the alert sender of a data dir (argv[1]) in a process of its own, at time argv[2] if given
SENDER = """
import sys
from coretriage.config import load_config
from coretriage.notify import deliver_due
from coretriage.store import Store
config = load_config(sys.argv[1])
deliver_due(config, Store(config.database_url), now=float(sys.argv[2]) if len(sys.argv) > 2 else None)
"""

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

    def kill_sender_mid_request(self, data_dir: Path, now: float | None = None) -> None:
        """Runs the alert sender of ``data_dir`` (``SENDER``) and kills it
        (SIGKILL) while its first request waits here, unanswered."""
        self.hold.clear()
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(data_dir), *([] if now is None else [str(now)])])
        try:
            assert self.got.wait(30)
            sender.send_signal(signal.SIGKILL)
            sender.wait(10)
        finally:
            self.hold.set()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@contextlib.contextmanager
def smtp_server(log: Path, timeout: float = 60.0, tls: tuple[Path, Path] | None = None):
    """Yield ``smtp://127.0.0.1:PORT`` of a running aiosmtpd that prints every
    message it gets to ``log``. ``tls``: (certificate, key): it offers
    STARTTLS and takes no mail before it."""
    if not os.path.exists("/usr/lib/python3/dist-packages/aiosmtpd"):
        raise RuntimeError("aiosmtpd missing: apt-get install python3-aiosmtpd (make system-deps)")
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(["/usr/bin/python3", "-u", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                                   *(["--tlscert", str(tls[0]), "--tlskey", str(tls[1])] if tls else [])],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(server, port, "aiosmtpd", timeout, log)
        yield f"smtp://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
