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
- Options only some programs give a secret, only after a word naming such a
  program (``mysql -pX``, ``sudo mysqldump -pX``, ``sh -c "curl -u u:pw …"``)
  or in an environment variable named for it (``MYSQL_OPTS``, ``CURL_ARGS``):
  MySQL and MariaDB clients' attached ``-pSECRET``; curl's ``-u``/``--user``
  and ``-U``/``--proxy-user`` ``user:pw`` (the user stays) and
  ``--oauth2-bearer``. Elsewhere ``-p…`` and ``-u …`` are left alone:
  ``-p8080`` is a port, ``-pthread`` a compiler flag, ``mkdir -p`` a flag,
  ``docker run -u 1000:1000`` a uid and gid.
- A command line the kernel cut (``mask_psargs``): a URL that ends where the
  cut is, before its authority ended, may be all credential: hidden.

Masking errs on the side of hiding: ``*KEY*`` also hides ``KEYBOARD``, and
free text with ``bearer`` in it loses the word after.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

MASK = "***"

DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*_PWD", "PASS", "*_PASS", "*SECRET*", "*TOKEN*", "*KEY*",
    "*CREDENTIAL*", "*AUTH*",
)
# (``*_PWD``, not ``*PWD*``: ``PWD`` and ``OLDPWD`` are the shell's directories)

PSARGS_MAX = 79  # the psargs note: ELF_PRARGSZ (80) bytes less the terminating NUL

# scheme://[user]:password@  -- the password runs to the last '@' of the authority
_URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^/?#\s]*)@")
# http(s)://TOKEN@ and ws(s)://TOKEN@ (also git+https://): a user part alone
_URL_USER = re.compile(
    r"(?P<head>\b(?:[A-Za-z][A-Za-z0-9.\-]*\+)?(?:[Hh][Tt][Tt][Pp][Ss]?|[Ww][Ss][Ss]?)://)(?P<user>[^:/?#@\s]+)@")
# a URL whose authority runs to the end of a cut text
_CUT_AUTHORITY = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]+$")
_AUTHORIZATION = re.compile(
    r"(?P<head>(?<![A-Za-z0-9])(?:proxy-)?authorization\s*[:=]\s*"
    r"(?:(?:bearer|basic|token|digest|negotiate|ntlm|apikey|key)\s+)?)(?P<cred>[^\s'\",;]+)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)(?P<cred>[^\s'\",;]+)", re.IGNORECASE)
# "key": value and 'key': value (JSON, Python reprs); a string cut short runs to the end
_QUOTED_KEY = re.compile(
    r"""(?P<q>["'])(?P<key>[^"'\\\s]{1,128})(?P=q)\s*:\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*(?:"|$)|'(?:[^'\\]|\\.)*(?:'|$)|[^\s,;}\]\[{"']+)""")
# name=value inside a longer text (query strings, DSNs, -Dprop=value)
_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)="
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,]*)")
_OPTION = re.compile(r"-{1,2}(?P<name>[A-Za-z0-9_.\-]+)")
_WORDS = re.compile(r"(\s+)")

_MYSQL = re.compile(r"(?:mysql|mariadb)[\w.\-]*", re.IGNORECASE)  # mysql, mysqldump, mariadb-admin, ...
_CURL_USER = ("-u", "--user", "-U", "--proxy-user")
_CURL_HIDDEN = ("--oauth2-bearer",)
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

def _program(word: str) -> str | None:
    base = word.strip("'\"").rsplit("/", 1)[-1]
    if _MYSQL.fullmatch(base):
        return "mysql"
    if base.lower() == "curl":
        return "curl"
    return None


def _program_named(name: str) -> str | None:
    """An environment variable that holds a program's options: MYSQL_OPTS, CURL_ARGS."""
    upper = name.upper()
    if "MYSQL" in upper or "MARIADB" in upper:
        return "mysql"
    if "CURL" in upper:
        return "curl"
    return None


def _user_pass(value: str) -> str:
    """curl's ``user:password``: the user stays (alone, curl asks for the password)."""
    user, colon, _ = value.partition(":")
    return f"{user}:{MASK}" if colon else value


def _option(word: str, program: str | None, patterns: tuple[str, ...]) -> tuple[str, str | None]:
    """One word: (the word masked, what the next word is: "all", "user" or None)."""
    if program == "mysql" and word.startswith("-p") and len(word) > 2:
        return f"-p{MASK}", None  # -pSECRET; a lone -p asks for the password
    if program == "curl":
        for opt in _CURL_USER:
            if word == opt:
                return word, "user"
            if opt.startswith("--") and word.startswith(opt + "="):
                return opt + "=" + _user_pass(word[len(opt) + 1:]), None
            if not opt.startswith("--") and word.startswith(opt) and not word.startswith("--"):
                return opt + _user_pass(word[len(opt):]), None
        if word in _CURL_HIDDEN:
            return word, "all"
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
                out.append(_user_pass(word))
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
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _URL_USER.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _AUTHORIZATION.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)

    def quoted_key(m: re.Match[str]) -> str:
        if not is_secret_name(m["key"], patterns):
            return m[0]
        value = m["value"]
        q = value[0] if value[0] in "\"'" else ""
        return f"{m[0][:m.start('value') - m.start()]}{q}{MASK}{q}"

    text = _QUOTED_KEY.sub(quoted_key, text)

    def pair(m: re.Match[str]) -> str:
        if is_secret_name(m["name"], patterns):
            return f"{m['name']}={MASK}"
        return m[0]

    text = _PAIR.sub(pair, text)
    parts = _WORDS.split(text)
    parts[::2] = _mask_words(parts[::2], patterns, program, quoted=True)
    text = "".join(parts)
    if cut:
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
