"""Normalise function names so that one bug has one name.

Drops C++ argument lists, qualifiers and template arguments, compiler
clone suffixes (.cold, .isra.0, [clone .constprop.0]) and glibc's internal
__GI_ alias prefix.
"""

from __future__ import annotations

import re

_CLONE = re.compile(r"\s*\[clone [^\]]*\]")
_SUFFIX = re.compile(r"(\.(cold|hot|isra|constprop|part|lto_priv|localalias|clone)(\.\d+)*)+$")
_QUALIFIERS = re.compile(r"(\s*(const|volatile|&&|&|noexcept))+$")
_OPERATORS = re.compile(r"operator\s*(<<=|>>=|<=>|<<|>>|<=|>=|->\*|->|<|>|\(\)|\[\])")
_ALIAS = re.compile(r"^__GI_(?=_*[A-Za-z])")
# glibc picks a string/memory routine per CPU (ifunc): __strlen_evex on one
# host is __strlen_avx2 on the next, __strlen_mte or __strlen_asimd on an
# aarch64 one, __memcpy_neon on 32-bit ARM. One bug, one name: strlen.
_VARIANTS = ("avx", "evex", "sse", "ssse", "erms", "unaligned", "aligned", "generic",  # x86-64
             "mte", "asimd", "simd", "nosimd", "sve", "mops", "a64fx", "falkor", "thunderx",  # aarch64
             "kunpeng", "emag", "zva", "oryon",
             "neon", "noneon", "vfp", "armv6t2", "armv7", "from_thumb")  # arm
_IFUNC = re.compile(r"^__((?:mem|str|stp|wcs|wmem|raw)[a-z]*?)_(?:%s)\w*$" % "|".join(_VARIANTS))
_LIBC_ALLOC = re.compile(r"^__libc_(malloc|free|calloc|realloc|memalign)$")


def normalize_function(name: str) -> str:
    name = _CLONE.sub("", name.strip())
    name = _SUFFIX.sub("", name)
    if name.startswith("<") and name.endswith(">"):
        return name  # gdb's own markers, e.g. <signal handler called>
    # protect operator<, operator() ... from the bracket handling below
    ops: list[str] = []

    def hold(m: re.Match) -> str:
        ops.append(m.group(0))
        return f"\0{len(ops) - 1}\0"

    name = _OPERATORS.sub(hold, name)
    name = _QUALIFIERS.sub("", name)
    name = _strip_arguments(name)
    name = _collapse_templates(name)
    name = re.sub(r"\0(\d+)\0", lambda m: ops[int(m.group(1))], name)
    name = _ALIAS.sub("", name.strip())
    name = _IFUNC.sub(r"\1", name)
    return _LIBC_ALLOC.sub(r"\1", name)


def _strip_arguments(name: str) -> str:
    if not name.endswith(")"):
        return name
    depth = 0
    for i in range(len(name) - 1, -1, -1):
        if name[i] == ")":
            depth += 1
        elif name[i] == "(":
            depth -= 1
            if depth == 0:
                return name[:i] if i > 0 else name
    return name


def _collapse_templates(name: str) -> str:
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            if depth == 0:
                out.append("<T>")
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


_FROZEN = re.compile(r"<frozen ([\w.]+)>")


def python_name(file: str | None, function: str | None, roots) -> tuple[str, bool]:
    """A Python frame's name in a signature, and whether it is library code.
    ``roots``: patterns matched at the start of the path (python_library.txt);
    the longest match is the root the module name counts from
    (``/usr/lib/python3.11/ctypes/__init__.py`` -> ``ctypes``). A file under
    none is the program's: named by its file name (``/srv/app/views.py`` ->
    ``views``), since where its sys.path root is cannot be known. A code
    object without a file (``<string>``, ``<stdin>``) gives ``file:function``."""
    function = function or "??"
    file = file or ""
    frozen = _FROZEN.fullmatch(file)
    if frozen:
        return f"{frozen.group(1)}.{function}", True
    if not file.endswith(".py"):
        return f"{file or '??'}:{function}", False
    end = max((m.end() for m in (p.match(file) for p in roots) if m), default=None)
    rest = file[end:] if end is not None else file.rsplit("/", 1)[-1]
    parts = [p for p in rest[:-3].split("/") if p]
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts:  # an /.../__init__.py of the program's: its directory's name
        parts = [file.rsplit("/", 2)[-2]] if file.count("/") >= 2 else ["??"]
    return ".".join(parts + [function]), end is not None
