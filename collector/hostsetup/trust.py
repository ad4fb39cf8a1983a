"""Whether only root can change what a root-run Python executes.

The kernel runs the pipe handler as root on every crash, and the collector
unit runs as root too: whoever can change the interpreter, its venv, a
directory on its ``sys.path`` (site-packages, the source dir of an editable
install) or the files of the packages it imports, or any directory above
one of those, runs code as root. ``untrusted_python`` finds the first such
place, in two steps:

1. without running anything: the interpreter (every symlink on the way),
   its ``pyvenv.cfg`` and the ``home`` it names, the standard library and
   site directories under each prefix, and what is directly in the site
   directories (a ``.pth`` file there runs code when Python starts);
2. only when those are root's: the interpreter itself, run the way the
   kernel runs it (``-I``), says where its ``sys.path`` and our packages
   are, and each of those (the editable source dir included) is checked,
   the packages' files one by one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from collector.pathtrust import untrusted_entry, untrusted_path

# what the handler and the collector import from outside the standard library
PACKAGES = ("collector", "analyzer", "zstandard")

_PROBE = r"""
import importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is not None:
        found[name] = [*(spec.submodule_search_locations or ()), *([spec.origin] if spec.origin else [])]
print(json.dumps({"path": sys.path, "packages": found}))
"""


def _prefixes(python: Path) -> list[Path]:
    """The directories a Python may load its standard library and site from,
    known before running it: the venv and its ``home``, and the prefix above
    the real executable."""
    out = []
    exe = Path(os.path.abspath(python))
    for venv in (exe.parent, exe.parent.parent):
        cfg = venv / "pyvenv.cfg"
        if cfg.is_file():
            out.append(venv)
            for line in cfg.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    out.append(Path(value.strip()).parent)
            break
    out.append(exe.resolve().parent.parent)
    return list(dict.fromkeys(out))


def _library_dirs(prefix: Path) -> list[Path]:
    lib = prefix / "lib"
    out = [lib]
    for version_dir in sorted(lib.glob("python3*")):
        out += [version_dir, version_dir / "lib-dynload", version_dir / "site-packages",
                version_dir / "dist-packages"]
    out += [lib / "python3" / "dist-packages", prefix / "local" / "lib"]
    return [p for p in out if os.path.lexists(p)]


def _entries(directory: Path) -> str | None:
    """The first entry directly in a site directory that another user can
    change: a .pth file there runs code at start-up, a module shadows ours."""
    try:
        names = os.listdir(directory)
    except (NotADirectoryError, FileNotFoundError):
        return None
    for name in names:
        try:
            why = untrusted_entry(directory / name, os.lstat(directory / name))
        except FileNotFoundError:
            continue
        if why:
            return why
    return None


def _static(python: Path) -> str | None:
    why = untrusted_path(python)
    if why:
        return why
    for prefix in _prefixes(python):
        for p in [prefix, prefix / "pyvenv.cfg", *_library_dirs(prefix)]:
            if os.path.lexists(p):
                why = untrusted_path(p) or (_entries(p) if p.name in ("site-packages", "dist-packages") else None)
                if why:
                    return why
    return None


def _tree(top: Path, limit: int = 5000) -> str | None:
    """The first file or directory under a package directory another user can change."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            seen += 1
            if seen > limit:
                return None
            try:
                why = untrusted_entry(p, os.lstat(p))
            except FileNotFoundError:
                continue
            if why:
                return why
    return None


def probe(python: Path, packages: tuple[str, ...] = PACKAGES, timeout: float = 30.0) -> dict:
    """``sys.path`` and package locations of ``python`` run with ``-I``, as the kernel runs it."""
    done = subprocess.run([str(python), "-I", "-c", _PROBE, *packages], capture_output=True, text=True,
                          timeout=timeout, cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if done.returncode != 0:
        raise OSError(f"{python} -I failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(done.stdout)


def untrusted_python(python: Path | str, packages: tuple[str, ...] = PACKAGES) -> str | None:
    """Why a user other than root could change what ``python -I -m collector.handler``
    executes or imports, or None (see the module docstring)."""
    python = Path(python)
    if not python.is_absolute():
        return f"{python} is not an absolute path"
    if not python.exists():
        return None  # nothing to run yet: the kernel's handler would fail, not run someone's code
    why = _static(python)
    if why:
        return why
    try:
        found = probe(python, packages)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return f"cannot ask {python} where it imports from: {exc}"
    places = [Path(p) for p in found["path"] if p and os.path.lexists(p)]
    for p in places:
        why = untrusted_path(p) or (_entries(p) if p.is_dir() else None)
        if why:
            return why
    for locations in found["packages"].values():
        for loc in map(Path, locations):
            why = untrusted_path(loc) or (_tree(loc) if loc.is_dir() else None)
            if why:
                return why
    return None
