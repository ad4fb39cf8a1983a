"""Mask secrets before anything about a crashed process is written down.

Pure functions over text; no I/O. The pipe handler applies them to the
environment and the command line it reads from ``/proc/<pid>`` so that
``meta.json`` never holds a password. (The core itself holds the process's
memory, environment included: it is kept root-only, mode 0600.)

What is masked:

- environment variables whose *name* matches one of the patterns
  (shell-style ``*`` and ``?``, case-insensitive; default
  ``DEFAULT_SECRET_NAMES``): the whole value;
- in every value and every argument, credentials inside URLs:
  ``scheme://user:pass@host`` becomes ``scheme://user:***@host``;
- in every value and every argument, ``name=value`` pairs whose name matches
  (query strings ``?token=…``, libpq DSNs ``password=…``, ``-Dapi.key=…``);
- command-line options whose name matches: ``--password=x`` and
  ``--password x`` (the next argument).

Masking errs on the side of hiding: ``*KEY*`` also hides ``KEYBOARD``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

MASK = "***"

DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "*PASSWORD*", "*PASSWD*", "*SECRET*", "*TOKEN*", "*KEY*", "*CREDENTIAL*", "*AUTH*",
)

# scheme://[user]:password@  -- the password runs to the last '@' of the authority
_URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^/?#\s]*)@")
# name=value inside a longer text (query strings, DSNs, -Dprop=value)
_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)="
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,]*)")
_OPTION = re.compile(r"-{1,2}(?P<name>[A-Za-z0-9_.\-]+)")


def _translate(pattern: str) -> str:
    """A shell-style name pattern (only ``*`` and ``?``) as a regex."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)


@functools.lru_cache(maxsize=16)
def _name_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{_translate(p)})" for p in patterns), re.IGNORECASE | re.DOTALL)


def is_secret_name(name: str, patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> bool:
    regex = _name_regex(tuple(patterns))
    return bool(regex and regex.fullmatch(name))


def mask_text(text: str, patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> str:
    """URL credentials and secret ``name=value`` pairs inside a free text."""
    patterns = tuple(patterns)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}{MASK}@", text)

    def pair(m: re.Match[str]) -> str:
        if is_secret_name(m["name"], patterns):
            return f"{m['name']}={MASK}"
        return m[0]

    return _PAIR.sub(pair, text)


def mask_environ(environ: Mapping[str, str], patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> dict[str, str]:
    patterns = tuple(patterns)
    return {name: MASK if is_secret_name(name, patterns) else mask_text(value, patterns)
            for name, value in environ.items()}


def mask_argv(argv: Iterable[str], patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> list[str]:
    patterns = tuple(patterns)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        option = _OPTION.match(arg)
        if option and option.end() == len(arg):  # --password VALUE
            hide_next = is_secret_name(option["name"], patterns)
        elif option and arg[option.end()] == "=" and is_secret_name(option["name"], patterns):
            arg = f"{arg[:option.end()]}={MASK}"  # --password=VALUE
        out.append(mask_text(arg, patterns))
    return out
