"""A small HTTP client for the real web server (``webserver.web_server``):
plain ``http.client``, so every request and header is exactly what the test
says. It keeps cookies like a browser (by name, for this one host), never
follows redirects, and lets a test copy, replay or forge a cookie. For an
app in the test's own process: ``viewer_test_client``."""

from __future__ import annotations

import http.client
import json as jsonlib
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    set_cookies: list[SimpleCookie] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str):
        """The Set-Cookie morsel for ``name`` in this response, or None."""
        for jar in self.set_cookies:
            if name in jar:
                return jar[name]
        return None


class Client:
    def __init__(self, base: str):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, json=None,
                headers: dict | None = None, timeout: float = 30.0) -> Response:
        sent = dict(headers or {})
        body = None
        if form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif json is not None:
            body = jsonlib.dumps(json).encode()
            sent["Content-Type"] = "application/json"
        if self.cookies and "Cookie" not in sent:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            raw = conn.getresponse()
            data = raw.read()
        finally:
            conn.close()
        jars = []
        for value in raw.headers.get_all("Set-Cookie") or ():
            jar = SimpleCookie()
            jar.load(value)
            jars.append(jar)
            for name, morsel in jar.items():
                if morsel["expires"] and "1970" in morsel["expires"] or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)  # deleted
                else:
                    self.cookies[name] = morsel.value
        return Response(raw.status, raw.headers, data, jars)

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict | None = None, **kw) -> Response:
        return self.request("POST", path, form=form, **kw)

    def csrf(self, path: str = "/login") -> str:
        """The CSRF token of the first form on a page."""
        page = self.get(path)
        found = CSRF.search(page.text)
        if not found:
            raise AssertionError(f"no CSRF token on {path} ({page.status})")
        return found.group(1)

    def login(self, user: str, password: str) -> Response:
        token = self.csrf("/login")
        return self.post("/login", {"username": user, "password": password, "csrf_token": token})


def viewer_test_client(app):
    """Flask's test client of ``app``, logged in through the login form as
    the viewer ``ann`` (password ``viewer-pass``), whom this adds."""
    from coretriage.users import hash_password

    app.extensions["store"].add_user("ann", hash_password("viewer-pass"), "viewer")
    client = app.test_client()
    token = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"username": "ann", "password": "viewer-pass", "csrf_token": token})
    return client


def write_settings(data_dir, **settings) -> None:
    """``DATA/coretriage.toml`` with these settings (numbers and booleans), for
    a server about to start."""
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()]
    (data_dir / "coretriage.toml").write_text("\n".join(lines) + "\n")
