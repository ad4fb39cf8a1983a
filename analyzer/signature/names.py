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
