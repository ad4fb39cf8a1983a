"""Mask secrets in what a crashed process says about itself: its command
line and its environment.

Pure functions over text; no I/O. One set of rules for every place this data
goes: the pipe handler masks the argv and environment it reads from
``/proc/<pid>`` before ``meta.json`` is written (``collector.process``); the
analysis masks the core's own copy of the command line, the psargs note
(``analyzer.analyze``); ingest masks again before storing, and every report,
API answer and page masks once more as it reads a row
(``coretriage.masking``), so rows stored by an older version do not leak
either. (The core itself holds the process's memory, environment included:
it is kept root-only, mode 0600.) Masking masked text changes nothing.

Secret names are shell-style patterns (``*`` and ``?``), case-insensitive,
with ``-``, ``.`` and ``_`` counted as the same character; the default is
``DEFAULT_SECRET_NAMES``, and ``secret_names`` in ``collector.toml``
replaces it. A secret name hides

- an environment variable's whole value (``MYSQL_PWD``, ``DB_PASS``);
- ``name=value`` pairs anywhere (``?access_token=…``, libpq's ``password=…``,
  ``-Dapi.key=…``, ``--password=…``);
- JSON and Python-dict values: ``{"password": "x"}`` (string or scalar);
- the next argument after an option: ``--password VALUE``, ``-token VALUE``
  (``--no-password`` is a flag: the argument after it stays).

Whatever the names:

- URL credentials: ``scheme://user:pw@host`` keeps the user. In ``http(s)``
  and ``ws(s)`` URLs a user part alone is a token too (``https://TOKEN@host``,
  as GitHub and GitLab use): hidden. Other schemes keep a bare user
  (``postgres://app@db``, ``ssh://git@host``): that is a name, not a key.
- HTTP credentials: ``Authorization: <scheme> CRED`` (``=`` too, and
  ``Proxy-Authorization``) and ``Bearer CRED`` anywhere.
- Options only some programs give a secret (``_PROGRAMS``), only after a
  word naming such a program (``mysql -pX``, ``sudo mysqldump -pX``,
  ``sh -c "curl -u u:pw …"``) or in an environment variable named for it
  (``MYSQL_OPTS``, ``CURL_ARGS``): MySQL and MariaDB clients' attached
  ``-pSECRET`` (a lone ``-p`` asks, and the next word is the database);
  curl's ``-u``/``--user`` and ``-U``/``--proxy-user`` ``user:pw`` (the user
  stays) and ``--oauth2-bearer``; ``redis-cli -a``; ``sshpass -p``; the
  MongoDB shells' and tools' ``-p``; ``smbclient -U user%pw``. Elsewhere
  ``-p…``, ``-a…`` and ``-u …`` are left alone: ``-p8080`` is a port,
  ``-pthread`` a compiler flag, ``mkdir -p`` a flag, ``docker run -u
  1000:1000`` a uid and gid.
- A command line the kernel cut (``mask_psargs``): a URL that ends where the
  cut is, before its authority ended, may be all credential: hidden.

Masking errs on the side of hiding: ``*KEY*`` also hides ``KEYBOARD``, and
free text with ``bearer`` in it loses the word after.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

MASK = "***"

DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*_PWD", "PASS", "*_PASS", "*SECRET*", "*TOKEN*", "*KEY*",
    "*CREDENTIAL*", "*AUTH*",
)
# (``*_PWD``, not ``*PWD*``: ``PWD`` and ``OLDPWD`` are the shell's directories)

PSARGS_MAX = 79  # the psargs note: ELF_PRARGSZ (80) bytes less the terminating NUL


class _Lazy:
    """A regex compiled on its first use: importing this module (every CLI
    command does, through the reports) compiles nothing."""

    def __init__(self, pattern: str, flags: int = 0):
        self._args = (pattern, flags)
        self._regex: re.Pattern[str] | None = None

    def __getattr__(self, name: str):  # only while ``name`` (sub, match, ...) is not yet an attribute
        if self._regex is None:
            self._regex = re.compile(*self._args)
        value = getattr(self._regex, name)
        setattr(self, name, value)
        return value


# scheme://[user]:password@  -- the password runs to the last '@' of the authority
_URL_CREDENTIALS = _Lazy(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^/?#\s]*)@")
# http(s)://TOKEN@ and ws(s)://TOKEN@ (also git+https://): a user part alone
_URL_USER = _Lazy(
    r"(?P<head>\b(?:[A-Za-z][A-Za-z0-9.\-]*\+)?(?i:https?|wss?)://)(?P<user>[^:/?#@\s]+)@")
# a URL whose authority runs to the end of a cut text
_CUT_AUTHORITY = _Lazy(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]+$")
_AUTHORIZATION = _Lazy(
    r"(?P<head>(?<![A-Za-z0-9])(?:proxy-)?authorization\s*[:=]\s*"
    r"(?:(?:bearer|basic|token|digest|negotiate|ntlm|apikey|key)\s+)?)(?P<cred>[^\s'\",;]+)", re.IGNORECASE)
_BEARER = _Lazy(r"(?P<head>\bbearer\s+)(?P<cred>[^\s'\",;]+)", re.IGNORECASE)
# "key": value and 'key': value (JSON, Python reprs); a string cut short runs to the end
_QUOTED_KEY = _Lazy(
    r"""(?P<q>["'])(?P<key>[^"'\\\s]{1,128})(?P=q)\s*:\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*(?:"|$)|'(?:[^'\\]|\\.)*(?:'|$)|[^\s,;}\]\[{"']+)""")
# name=value inside a longer text (query strings, DSNs, -Dprop=value)
_PAIR = _Lazy(
    r"(?<![A-Za-z0-9_.])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)="
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,]*)")
_OPTION = _Lazy(r"-{1,2}(?P<name>[A-Za-z0-9_.\-]+)")
_WORDS = _Lazy(r"(\s+)")

_SEPARATORS = frozenset((";", "&&", "||", "|", "&"))


def _normal(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def _translate(pattern: str) -> str:
    """A shell-style name pattern (only ``*`` and ``?``) as a regex."""
    out = []
    for ch in _normal(pattern):
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
    return bool(regex and regex.fullmatch(_normal(name)))


# ---- programs whose options carry secrets ----

class _Program(NamedTuple):  # (a dataclass would cost the handler a millisecond at import)
    """Options that carry a secret in one program's argv, by how."""

    names: str  # a regex of the program's file names
    env: tuple[str, ...]  # in an environment variable's name: the value holds its options
    attached: tuple[str, ...] = ()  # -pSECRET: the rest of the word (alone, the option asks)
    separate: tuple[str, ...] = ()  # -a SECRET, -aSECRET, --opt SECRET, --opt=SECRET
    user_pass: tuple[str, ...] = ()  # -u user:SECRET: the user stays
    sep: str = ":"  # between user and password


_PROGRAMS: dict[str, _Program] = {
    "mysql": _Program(r"(?:mysql|mariadb)[\w.\-]*", ("MYSQL", "MARIADB"), attached=("-p",)),
    "curl": _Program(r"curl", ("CURL",), separate=("--oauth2-bearer",),
                     user_pass=("-u", "--user", "-U", "--proxy-user")),
    "redis-cli": _Program(r"(?:redis|valkey|keydb)-cli", ("REDIS",), separate=("-a",)),
    "mongo": _Program(r"mongo(?:sh|dump|restore|export|import|stat|top|files)?", ("MONGO",),
                      separate=("-p",)),
    "sshpass": _Program(r"sshpass", ("SSHPASS",), separate=("-p",)),
    "smbclient": _Program(r"smbclient|rpcclient|smbget", ("SMB",), user_pass=("-U", "--user"), sep="%"),
}


_PROGRAM_KEYS = tuple(_PROGRAMS)
_ANY_PROGRAM = _Lazy("|".join(f"(?P<p{i}>{p.names})" for i, p in enumerate(_PROGRAMS.values())), re.IGNORECASE)


def _program(word: str) -> str | None:
    m = _ANY_PROGRAM.fullmatch(word.strip("'\"").rsplit("/", 1)[-1])
    return _PROGRAM_KEYS[int(m.lastgroup[1:])] if m else None


def _program_named(name: str) -> str | None:
    """An environment variable that holds a program's options: MYSQL_OPTS, CURL_ARGS."""
    upper = name.upper()
    return next((key for key, p in _PROGRAMS.items() if any(e in upper for e in p.env)), None)


def _user_pass(value: str, sep: str = ":") -> str:
    """``user:password``: the user stays (alone, the program asks for the password)."""
    user, found, _ = value.partition(sep)
    return f"{user}{sep}{MASK}" if found else value


def _value_of(word: str, options: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(option, its value in the same word, or None when the value is the
    next word) if ``word`` is one of ``options``: ``-a``, ``-aX``, ``--opt``,
    ``--opt=X``."""
    for opt in options:
        if word == opt:
            return opt, None
        if opt.startswith("--"):
            if word.startswith(opt + "="):
                return opt + "=", word[len(opt) + 1:]
        elif word.startswith(opt) and not word.startswith("--"):
            return opt, word[len(opt):]
    return None


def _option(word: str, program: str | None, patterns: tuple[str, ...]) -> tuple[str, str | None]:
    """One word: (the word masked, what the next word is: "all", "user" or None)."""
    known = _PROGRAMS.get(program) if program else None
    if known is not None:
        if (found := _value_of(word, known.attached)) and found[1]:
            return found[0] + MASK, None
        if found := _value_of(word, known.separate):
            return (word, "all") if found[1] is None else (found[0] + MASK, None)
        if found := _value_of(word, known.user_pass):
            return (word, "user") if found[1] is None else (found[0] + _user_pass(found[1], known.sep), None)
    option = _OPTION.match(word)
    if option is None:
        return word, None
    name = option["name"]
    if option.end() == len(word):  # --password VALUE (but --no-password is a flag)
        flag = name.lower().startswith("no-")
        return word, "all" if not flag and is_secret_name(name, patterns) else None
    if word[option.end()] == "=" and is_secret_name(name, patterns):
        return f"{word[:option.end()]}={MASK}", None  # --password=VALUE
    return word, None


def _mask_words(words: list[str], patterns: tuple[str, ...], program: str | None = None,
                quoted: bool = False) -> list[str]:
    """The rules that span words: an option and its value, a program and its
    options. ``words``: an argv, or (``quoted``) a text split at white space,
    where a hidden value that opens a quote runs to the word that closes it."""
    out: list[str] = []
    hide: str | None = None
    closing: str | None = None
    for word in words:
        if closing is not None:
            out.append(MASK)
            if word.endswith(closing):
                closing = None
            continue
        if hide is not None and not word.startswith("-"):
            if hide == "user":
                known = _PROGRAMS.get(program or "")
                out.append(_user_pass(word, known.sep if known else ":"))
            else:
                out.append(MASK)
                q = word[:1]
                if quoted and q in ("'", '"') and not (len(word) > 1 and word.endswith(q)):
                    closing = q
            hide = None
            continue
        if word in _SEPARATORS:
            program = None
        program = _program(word) or program
        word, hide = _option(word, program, patterns)
        out.append(word)
    return out


# ---- the masks ----

def mask_text(text: str, patterns: Iterable[str] = DEFAULT_SECRET_NAMES, program: str | None = None,
              cut: bool = False) -> str:
    """Every rule, on a free text: an argument, an environment value, a
    command line joined with spaces. ``program``: the text holds that
    program's options ("mysql", "curl"). ``cut``: the text was cut short."""
    patterns = tuple(patterns)
    # each rule only where its mark is: most values are paths and words
    if "://" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}{MASK}@", text)
        text = _URL_USER.sub(lambda m: f"{m['head']}{MASK}@", text)
    low = text.lower()
    if "authorization" in low:
        text = _AUTHORIZATION.sub(lambda m: f"{m['head']}{MASK}", text)
    if "bearer" in low:
        text = _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)

    def quoted_key(m: re.Match[str]) -> str:
        if not is_secret_name(m["key"], patterns):
            return m[0]
        value = m["value"]
        q = value[0] if value[0] in "\"'" else ""
        return f"{m[0][:m.start('value') - m.start()]}{q}{MASK}{q}"

    if ":" in text and ('"' in text or "'" in text):
        text = _QUOTED_KEY.sub(quoted_key, text)

    def pair(m: re.Match[str]) -> str:
        if is_secret_name(m["name"], patterns):
            return f"{m['name']}={MASK}"
        return m[0]

    if "=" in text:
        text = _PAIR.sub(pair, text)
    if "-" in text:  # every rule across words starts at an option
        parts = _WORDS.split(text)
        parts[::2] = _mask_words(parts[::2], patterns, program, quoted=True)
        text = "".join(parts)
    if cut and "://" in text:
        text = _CUT_AUTHORITY.sub(lambda m: f"{m['head']}{MASK}", text)
    return text


def mask_psargs(psargs: str, patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> str:
    """The core's psargs note: the command line joined with spaces and cut
    to ``PSARGS_MAX`` bytes (as UTF-8 with replacement characters it can only
    grow, so a cut note is never shorter than that less the stripped end)."""
    return mask_text(psargs, patterns, cut=len(psargs.encode("utf-8")) >= PSARGS_MAX - 1)


def mask_environ(environ: Mapping[str, str], patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> dict[str, str]:
    patterns = tuple(patterns)
    return {name: MASK if is_secret_name(name, patterns) else mask_text(value, patterns, _program_named(name))
            for name, value in environ.items()}


def mask_argv(argv: Iterable[str], patterns: Iterable[str] = DEFAULT_SECRET_NAMES) -> list[str]:
    patterns = tuple(patterns)
    return [mask_text(arg, patterns) for arg in _mask_words(list(argv), patterns)]
