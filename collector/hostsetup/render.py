"""Files that install writes, rendered from the templates in ``host-setup/``.
``render`` is pure; ``template`` reads a template file."""

from __future__ import annotations

import re
import shlex
from importlib.resources import files
from pathlib import Path

# host-setup/ at the top of the source tree, installed as this package's data
TEMPLATES = "collector.hostsetup.files"
# Crashes that may dump at once. The kernel skips every crash past it with
# no core and no handler (only a line in its log), so a storm, say every
# worker of a prefork server at once, must fit. A slot holds its dead process
# only until the handler is done, and the handler has a time budget
# (max_core_seconds); systemd-coredump's 16 would drop the rest of a storm.
CORE_PIPE_LIMIT = 128

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def template(name: str) -> str:
    path = files(TEMPLATES) / name
    try:
        return path.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"host-setup template missing: {path} ({exc.strerror})") from None


def render(text: str, values: dict[str, str]) -> str:
    """Replace every ``@NAME@``; a placeholder without a value is an error."""
    def sub(m: re.Match) -> str:
        if m[1] not in values:
            raise KeyError(f"no value for template placeholder @{m[1]}@")
        return values[m[1]]
    return _PLACEHOLDER.sub(sub, text)


def sysctl_conf(core_pattern: str, core_pipe_limit: int = CORE_PIPE_LIMIT, *, text: str | None = None) -> str:
    text = template("50-coretriage.conf.in") if text is None else text
    return render(text, {"CORE_PATTERN": core_pattern, "CORE_PIPE_LIMIT": str(core_pipe_limit)})


def parse_sysctl_conf(text: str) -> dict[str, str]:
    """The sysctl.d syntax as systemd-sysctl reads it: ``key = value``, # and ; comments."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip().lstrip("-").replace("/", ".")] = value.strip()
    return out


def limitcore_dropin(*, text: str | None = None) -> str:
    return template("limitcore.conf") if text is None else text


def systemd_quote(arg: str) -> str:
    """One ExecStart= word: ``%`` doubled (unit specifiers), quoted if it holds
    whitespace, quotes or backslashes."""
    arg = arg.replace("%", "%%")
    if arg and not re.search(r'[\s"\'\\;$]', arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'


def collector_argv(python: str, data_dir: Path, socket: bool = False) -> list[str]:
    argv = [python, "-m", "coretriage.cli", "--data-dir", str(data_dir), "collector", "run"]
    return argv + ["--socket"] if socket else argv  # socket mode: the daemon receives the cores


def collector_unit(python: str, data_dir: Path, *, text: str | None = None, socket: bool = False) -> str:
    text = template("coretriage-collector.service.in") if text is None else text
    exec_start = " ".join(systemd_quote(a) for a in collector_argv(python, data_dir, socket))
    # ProtectHome=yes would hide a venv or data dir that lives in a home directory
    homes = (Path("/home"), Path("/root"))
    in_home = any(h == p or h in p.parents for p in (Path(python).absolute(), Path(data_dir).absolute())
                  for h in homes)
    return render(text, {"EXEC_START": exec_start, "DATA_DIR": systemd_quote(str(Path(data_dir).absolute())),
                         "PROTECT_HOME": "read-only" if in_home else "yes"})


def wrapper_script(command: tuple[str, ...] | list[str], *, text: str | None = None) -> str:
    text = template("coretriage-core-handler.in") if text is None else text
    return render(text, {"COMMAND": " ".join(shlex.quote(a) for a in command)})
