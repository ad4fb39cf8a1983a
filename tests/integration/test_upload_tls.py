"""A host's uploads over https verify the server's certificate: a server
whose certificate no trusted CA signed is refused (and the token never
sent), and accepted with that CA as ``server_ca``. A real TLS server on
loopback, its certificate made by openssl."""

import http.server
import json
import ssl
import subprocess
import threading

import pytest

from collector.upload import Busy, Server, UploadSettings


@pytest.fixture
def tls_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("Authorization"))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", cert, seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_unknown_certificate_is_refused_and_a_private_ca_accepted(tls_server, tmp_path):
    url, cert, seen = tls_server
    untrusting = Server(UploadSettings(url=url, token="cth_secret", data_dir=tmp_path))
    with pytest.raises(Busy) as exc:
        untrusting.call("POST", "/heartbeat", {})
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value) and "cth_secret" not in str(exc.value)
    assert seen == []  # the token never left before the server was verified
    trusting = Server(UploadSettings(url=url, token="cth_secret", data_dir=tmp_path, ca=str(cert)))
    assert trusting.call("POST", "/heartbeat", {}) == (200, {"ok": True})
    assert seen == ["Bearer cth_secret"]
    assert "cth_secret" not in repr(UploadSettings(url=url, token="cth_secret", data_dir=tmp_path))
