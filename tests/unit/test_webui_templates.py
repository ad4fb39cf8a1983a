"""The web UI's templates and static files need nothing the Content-Security-Policy
(webui/security.py) forbids: no inline script or style, no event handler
attributes, no javascript: or data: URLs."""

import re
from pathlib import Path

from webui.security import CSP

WEBUI = Path(__file__).resolve().parents[2] / "webui"
FORBIDDEN = {
    "inline script": re.compile(r"<script", re.I),
    "inline style element": re.compile(r"<style", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "data: URL": re.compile(r"""(src|href)\s*=\s*["']?data:""", re.I),
}


def test_templates_need_no_inline_code():
    files = [*WEBUI.glob("templates/**/*.html"), *WEBUI.glob("static/*"), WEBUI / "filters.py", WEBUI / "rows.py"]
    assert len(files) > 5
    found = [f"{path.relative_to(WEBUI)}: {what}" for path in files for what, pattern in FORBIDDEN.items()
             if pattern.search(path.read_text())]
    assert not found


def test_policy_allows_no_inline_code():
    directives = {d.split()[0]: d.split()[1:] for d in CSP.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"] and "script-src" not in directives
    assert directives["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in v or "data:" in v or "*" in v for vs in directives.values() for v in vs)
