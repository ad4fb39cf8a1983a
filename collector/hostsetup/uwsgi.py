"""uwsgi masters that swallow their workers' crashes.

uwsgi installs its own SIGSEGV/SIGFPE handler: it logs a backtrace and the
worker exits, so the kernel writes no core and coretriage never hears of the
crash. With ``use-abort`` the handler calls abort() after logging, and the
core is written (the analysis reads the original fault through the handler's
signal frame). ``uses_abort`` (pure) decides from the master's command line,
its environment and the text of the config files it names; ``masters`` and
``config_texts`` gather those facts from /proc.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from collector.hostsetup import procfs

TRUE = frozenset({"", "1", "true", "yes", "on", "y", "t"})
CONFIG_OPTIONS = {"--ini": "ini", "--yaml": "yaml", "--yml": "yaml", "--xml": "xml", "--json": "json",
                  "--js": "json"}
CONFIG_SUFFIXES = {".ini": "ini", ".yaml": "yaml", ".yml": "yaml", ".xml": "xml", ".json": "json", ".js": "json"}
MAX_CONFIG = 1 << 20

_INI_SECTION = re.compile(r"^\s*\[([^\]]*)\]\s*$")
_INI_KEY = re.compile(r"^\s*use[-_]abort\s*(?:=\s*(.*?))?\s*$", re.IGNORECASE)
_YAML_KEY = re.compile(r"^\s+use[-_]abort\s*:\s*['\"]?([^'\"#\s]*)", re.IGNORECASE | re.MULTILINE)
_XML_EMPTY = re.compile(r"<use[-_]abort\s*/>", re.IGNORECASE)
_XML_VALUE = re.compile(r"<use[-_]abort\s*>\s*([^<]*?)\s*</use[-_]abort\s*>", re.IGNORECASE)
_JSON_KEY = re.compile(r"\"use[-_]abort\"\s*:\s*\"?([^\",}\s]*)", re.IGNORECASE)


def config_files(argv: list[str]) -> list[tuple[str, str]]:
    """(kind, path) of every config file the command line loads, in order:
    ``--ini FILE``, ``--ini=FILE``, and a lone ``app.ini`` argument."""
    out = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        name, _, value = arg.partition("=")
        if name in CONFIG_OPTIONS:
            if not value and i + 1 < len(args):
                i += 1
                value = args[i]
            if value:
                out.append((CONFIG_OPTIONS[name], value))
        elif not arg.startswith("-") and Path(arg).suffix in CONFIG_SUFFIXES:
            out.append((CONFIG_SUFFIXES[Path(arg).suffix], arg))
        i += 1
    return out


def _on(value: str | None) -> bool:
    return (value or "").strip().strip("'\"").lower() in TRUE


def in_command_line(argv: list[str]) -> bool | None:
    """``--use-abort`` (a flag, or with a value), the last one wins; None: not said."""
    found = None
    for i, arg in enumerate(argv[1:], 1):
        name, eq, value = arg.partition("=")
        if name.replace("_", "-") != "--use-abort":
            continue
        if eq:
            found = _on(value)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-") and argv[i + 1].lower() in TRUE | {
                "0", "false", "no", "off"}:
            found = _on(argv[i + 1])
        else:
            found = True
    return found


def in_config(kind: str, text: str) -> bool | None:
    """What one config file says of use-abort; None: nothing."""
    if kind == "ini":
        section, found = "uwsgi", None
        for line in text.splitlines():
            head = _INI_SECTION.match(line)
            if head:
                section = head.group(1).strip()
                continue
            key = _INI_KEY.match(line)
            if key and section == "uwsgi":
                found = _on(key.group(1))
        return found
    if kind == "yaml":
        values = _YAML_KEY.findall(text)
        return _on(values[-1]) if values else None
    if kind == "xml":
        if _XML_EMPTY.search(text):
            return True
        values = _XML_VALUE.findall(text)
        return _on(values[-1]) if values else None
    if kind == "json":
        values = _JSON_KEY.findall(text)
        return _on(values[-1]) if values else None
    return None


def uses_abort(argv: list[str], environ: dict[str, str], configs: list[tuple[str, str | None]]) -> bool | None:
    """Whether this uwsgi master runs with use-abort. ``configs``: (kind,
    text) of each config file it names (text None: unreadable). None: a
    config that could say so could not be read."""
    said = in_command_line(argv)
    if said is not None:
        return said
    unread = False
    for kind, text in configs:
        if text is None:
            unread = True
            continue
        found = in_config(kind, text)
        if found is not None:
            said = found
    if said is not None:
        return said
    if "UWSGI_USE_ABORT" in environ:
        return _on(environ["UWSGI_USE_ABORT"])
    return None if unread else False


def _is_uwsgi(proc: Path, pid: int) -> bool:
    comm = (procfs.read_text(Path(proc) / str(pid) / "comm") or "").strip()
    if comm.lower().startswith("uwsgi"):
        return True
    argv = procfs.cmdline(proc, pid)
    return bool(argv) and Path(argv[0]).name.startswith("uwsgi")


def masters(proc: Path) -> list[int]:
    """uwsgi processes whose parent is not uwsgi: the masters (or a lone
    uwsgi without a master, which has the same handler)."""
    found = [pid for pid in procfs.pids(proc) if _is_uwsgi(proc, pid)]
    ours = set(found)
    out = []
    for pid in found:
        info = procfs.proc_info(proc, pid)
        if info is not None and info.ppid not in ours:
            out.append(pid)
    return out


def _environ(proc: Path, pid: int) -> dict[str, str]:
    raw = procfs.read_text(Path(proc) / str(pid) / "environ") or ""
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _read_config(proc: Path, pid: int, path: str) -> str | None:
    """A config file as the master sees it: inside its own root (a
    container's), relative to its working directory; a regular file only."""
    if "://" in path:  # uwsgi also loads configs over http or from other sources
        return None
    base = Path(proc) / str(pid)
    if not path.startswith("/"):
        try:
            cwd = os.readlink(base / "cwd")
        except OSError:
            return None
        path = os.path.join(cwd, path)
    target = base / "root" / path.lstrip("/")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MAX_CONFIG).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def master_facts(proc: Path, pid: int) -> tuple[list[str], bool | None, list[tuple[str, str]]]:
    """(argv, uses_abort, the config files it names as (kind, path)) of one master."""
    argv = procfs.cmdline(proc, pid)
    files = config_files(argv)
    configs = [(kind, _read_config(proc, pid, path)) for kind, path in files]
    return argv, uses_abort(argv, _environ(proc, pid), configs), files


# how use-abort is set in each kind of config file
SETTING = {"ini": "`use-abort = true` to the [uwsgi] section of", "yaml": "`use-abort: true` under `uwsgi:` in",
           "xml": "`<use-abort>true</use-abort>` inside `<uwsgi>` in", "json": '`"use-abort": true` to the '
           '"uwsgi" object of'}


def how_to_set(configs: list[tuple[str, str]]) -> str:
    """The fix, in the syntax of the config file the master loads last."""
    if not configs:
        return "add `--use-abort` to its command line (or `use-abort = true` to its ini config), then restart uwsgi"
    kind, path = configs[-1]
    return f"add {SETTING[kind]} {path} (or `--use-abort` to its command line), then restart uwsgi"
