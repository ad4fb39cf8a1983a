"""The layers show in the imports: analyzer/ is a library that imports none
of the other packages; the collector, which runs as root on every host,
takes from the analyzer only the build-id reader, the error base class and
the secret masking, and nothing from the application or the web UI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("analyzer", "collector", "coretriage", "webui")


def imports(package: str) -> dict[str, set[str]]:
    """file -> the modules of ours it imports, anywhere in the file."""
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = {n for n in names if n.split(".")[0] in OURS}
    return out


def test_analyzer_imports_only_itself():
    bad = {f: sorted(n for n in names if not n.startswith("analyzer"))
           for f, names in imports("analyzer").items()}
    assert not {f: n for f, n in bad.items() if n}


def test_collector_takes_only_the_build_id_reader_errors_and_masking_from_below():
    # analyzer.secrets: the handler masks argv and the environment with the same
    # rules the analysis masks the core's psargs with and the application masks
    # what it stores and shows; pure functions, stdlib only
    allowed = ("collector", "analyzer.elfid", "analyzer.errors", "analyzer.secrets")
    bad = {f: sorted(n for n in names if not n.startswith(allowed)) for f, names in imports("collector").items()}
    assert not {f: n for f, n in bad.items() if n}


def test_the_application_never_imports_the_web_ui_but_to_serve_it():
    # services.py starts the web server (``web``, ``run``); nothing else above it
    bad = {f: sorted(n for n in names if n.startswith("webui"))
           for f, names in imports("coretriage").items() if not f.endswith("services.py")}
    assert not {f: n for f, n in bad.items() if n}
