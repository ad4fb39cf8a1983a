"""PostgreSQL backends: the statement being run, backend type, version.

``debug_query_string`` and ``MyBackendType`` are in postgres' dynamic symbol
table, so this works on a stock build without debug symbols.
"""

from __future__ import annotations

import re

from analyzer.enrichers import Probe, Target, search_file
from analyzer.model import Context

PROGRAM = "postgresql"

# src/include/miscadmin.h, BackendType, PostgreSQL 15
BACKEND_TYPES = ("invalid", "autovacuum launcher", "autovacuum worker", "client backend",
                 "background worker", "background writer", "checkpointer", "startup",
                 "walreceiver", "walsender", "walwriter", "archiver", "logger")

_LITERAL = re.compile(r"""
      '(?:[^']|'')*'             # 'string'  ('' escapes a quote)
    | \$(\w*)\$.*?\$\1\$         # $tag$ dollar-quoted $tag$
    | \b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b   # numbers
    """, re.VERBOSE | re.DOTALL | re.IGNORECASE)


def mask_literals(sql: str) -> str:
    """Replace string and number literals with ``?``: statements carry
    passwords and personal data; their shape is what triage needs."""
    return _LITERAL.sub("?", sql)


def matches(target: Target) -> bool:
    return target.name in ("postgres", "postmaster")


def enrich(target: Target, probe: Probe) -> Context | None:
    fields = []
    query = probe.string("*(char **)&debug_query_string")
    if query:
        shown = query if target.options.get("show_literals") else mask_literals(query)
        fields.append(("query", shown))
    kind = probe.evaluate("*(int *)&MyBackendType")
    if kind is not None and kind.lstrip("-").isdigit():
        n = int(kind)
        fields.append(("backend_type", BACKEND_TYPES[n] if 0 <= n < len(BACKEND_TYPES) else str(n)))
    version = search_file(target.executable_file, rb"PostgreSQL \d+(?:\.\d+)? \([^)\0]{1,80}\)(?: on [^\0]{1,200})?")
    if version:
        fields.append(("version", version[0]))
    return Context(PROGRAM, tuple(fields)) if fields else None
