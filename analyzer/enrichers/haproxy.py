"""HAProxy: version and build options, read from the binary that crashed."""

from __future__ import annotations

from analyzer.enrichers import Probe, Target, search_file
from analyzer.model import Context

PROGRAM = "haproxy"


def matches(target: Target) -> bool:
    return target.name.startswith("haproxy")


def enrich(target: Target, probe: Probe) -> Context | None:
    fields = []
    version = probe.string("*(char **)&haproxy_version")
    if not version:
        found = search_file(target.executable_file, rb"\0(\d+\.\d+\.\d+[-+~.\w]*)\0(?:[^\0]*\0){0,3}?\d{4}/\d\d/\d\d\0")
        version = found.group(1).decode() if found else None
    if version:
        fields.append(("version", version))
    opts = search_file(target.executable_file, rb"OPTIONS = ([^\n\0]*)")
    if opts:
        fields.append(("build_options", opts.group(1).decode("utf-8", "replace").strip()))
    if target.options.get("lua") or any("liblua" in m for m in target.modules):
        fields.append(("lua", "yes"))
    return Context(PROGRAM, tuple(fields)) if fields else None
