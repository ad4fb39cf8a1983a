"""HAProxy: version and build options, read from the binary that crashed."""

from __future__ import annotations

from analyzer.enrichers import Probe, Target, search_file
from analyzer.model import Context

PROGRAM = "haproxy"


def matches(target: Target) -> bool:
    return target.name.startswith("haproxy")


def enrich(target: Target, probe: Probe) -> Context | None:
    fields = []
    # haproxy_version is an exported char array (no debug info needed)
    version = probe.string("(char *)&haproxy_version")
    if not version:
        found = search_file(target.executable_file, rb" version (\d+\.\d+\.\d+[-+~.\w]*), released")
        version = found[1] if found else None
    if version:
        fields.append(("version", version))
    opts = search_file(target.executable_file, rb"OPTIONS = ([^\n\0]*)")
    if opts:
        fields.append(("build_options", opts[1].strip()))
    if target.options.get("lua") or any("liblua" in m for m in target.modules):
        fields.append(("lua", "yes"))
    return Context(PROGRAM, tuple(fields)) if fields else None
