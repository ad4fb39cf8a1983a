"""PostgreSQL backends: the statement being run, backend type, version.

``debug_query_string`` and ``MyBackendType`` are in postgres' dynamic symbol
table, so this works on a stock build without debug symbols. In a stack-only
core (collector.stackcore) the globals are there but not the heap the query
text is in: the query field then says so in one line.
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


def _hex(value: str) -> str:
    return hex(int(value)) if value.isdigit() else value


def matches(target: Target) -> bool:
    return target.name in ("postgres", "postmaster")


def enrich(target: Target, probe: Probe) -> Context | None:
    fields = []
    query = probe.string("*(char **)&debug_query_string")
    if query:
        shown = query if target.options.get("show_literals") else mask_literals(query)
        fields.append(("query", shown))
    elif (pointer := probe.evaluate("*(unsigned long *)&debug_query_string")) not in (None, "0"):
        # a statement was running, but its text is not in the core (a stack-only core keeps no heap)
        fields.append(("query", f"not available: the memory at {_hex(pointer)} is not in the core"))
    kind = probe.evaluate("*(int *)&MyBackendType")
    if kind is not None and kind.lstrip("-").isdigit():
        n = int(kind)
        fields.append(("backend_type", BACKEND_TYPES[n] if 0 <= n < len(BACKEND_TYPES) else str(n)))
    version = search_file(target.executable_file, rb"PostgreSQL \d+(?:\.\d+)? \([^)\0]{1,80}\)(?: on [^\0]{1,200})?")
    if version:
        fields.append(("version", version[0]))
    return Context(PROGRAM, tuple(fields)) if fields else None
