"""uwsgi workers: which worker crashed and the request it was serving.

Debian's uwsgi has no debug info, so nothing is read through its structs'
fields by name. Two fixed layouts are searched in the core's anonymous
memory instead: the worker table in uwsgi's shared memory (``struct
uwsgi_worker`` starts with ``int id; pid_t pid``: the crashed pid gives the
worker's id) and the request as the uwsgi protocol carried it (each
variable is a little-endian 16-bit length and the bytes). Every worker's
request buffers are shared memory: the request being served is the one
whose value is pointed to from the ``wsgi_req`` the crashed thread's stack
points to; when that cannot be told, no request is claimed.
"""

from __future__ import annotations

import bisect
import mmap
import re
import struct

from analyzer.enrichers import Probe, Target
from analyzer.model import Context
from analyzer.secrets import mask_text

PROGRAM = "uwsgi"
SCAN_BYTES = 1 << 30  # anonymous memory searched at most, in address order
MAX_WORKERS = 65536
VARIABLES = (b"REQUEST_METHOD", b"PATH_INFO")
MAX_CANDIDATES = 64
STACK_BYTES = 1 << 20  # of the crashed thread's stack, above its stack pointer
STRUCT_BYTES = 0x1000  # how far into a pointed-to struct a field may be


def matches(target: Target) -> bool:
    return target.name.startswith("uwsgi") and target.core is not None


def enrich(target: Target, probe: Probe) -> Context | None:
    sp = re.search(r"0x[0-9a-f]+", probe.evaluate("$sp") or "")
    fields = scan(target, int(sp.group(0), 16) if sp else None)
    return Context(PROGRAM, fields) if fields else None


def _spans(target: Target, data: mmap.mmap, f) -> list[tuple[int, int, int]]:
    """(file offset, end, address bias) of the writable anonymous memory, within the budget."""
    from elftools.elf.elffile import ELFFile

    out, budget = [], SCAN_BYTES
    for seg in ELFFile(f).iter_segments():
        if seg["p_type"] != "PT_LOAD" or not seg["p_filesz"] or not seg["p_flags"] & 2:  # writable only
            continue
        vaddr, size = seg["p_vaddr"], min(seg["p_filesz"], budget, max(0, len(data) - seg["p_offset"]))
        if size <= 0 or any(lo <= vaddr < hi for lo, hi in target.file_ranges):
            continue  # a file's data, not the heap or shared memory
        budget -= size
        out.append((seg["p_offset"], seg["p_offset"] + size, vaddr - seg["p_offset"]))
        if budget <= 0:
            break
    return out


def scan(target: Target, sp: int | None = None) -> tuple[tuple[str, str], ...]:
    with open(target.core, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        spans = _spans(target, data, f)
        worker = None
        if target.pid:
            worker = next((w for w in (_worker(data, s, target.pid) for s in spans) if w is not None), None)
        stack = _stack_words(data, f, sp) if sp else []
        request = {name: _live_variable(data, spans, name, stack) for name in VARIABLES}
    fields = []
    if worker is not None:
        fields.append(("worker", str(worker)))
    if request[b"PATH_INFO"] is not None:
        method = request[b"REQUEST_METHOD"] or ""
        fields.append(("request", mask_text(f"{method} {request[b'PATH_INFO']}".strip())))
    return tuple(fields)


def _stack_words(data: mmap.mmap, f, sp: int) -> list[int]:
    """The 8-byte words of the crashed thread's stack above ``sp``, sorted."""
    from elftools.elf.elffile import ELFFile

    for seg in ELFFile(f).iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= sp < seg["p_vaddr"] + seg["p_filesz"]:
            start = seg["p_offset"] + sp - seg["p_vaddr"]
            end = min(seg["p_offset"] + seg["p_filesz"], start + STACK_BYTES, len(data))
            return sorted(struct.unpack_from(f"<{(end - start) // 8}Q", data, start))
    return []


def _worker(data: mmap.mmap, span: tuple[int, int, int], pid: int) -> int | None:
    """The id of the 8-byte aligned ``{int id; pid_t pid}`` holding ``pid``."""
    start, end, bias = span
    needle = struct.pack("<i", pid)
    at = data.find(needle, start, end)
    while at >= 0:
        if at - 4 >= start and (bias + at - 4) % 8 == 0:
            (wid,) = struct.unpack_from("<i", data, at - 4)
            if 0 < wid < MAX_WORKERS:
                return wid
        at = data.find(needle, at + 1, end)
    return None


def _live_variable(data: mmap.mmap, spans, name: bytes, stack: list[int]) -> str | None:
    """The value of the uwsgi-protocol variable ``name`` in the request being
    served. Every worker's request buffers are in shared memory, so each
    worker's last request is in every worker's core: the current one is the
    value pointed to from within a struct (``wsgi_req``) that the crashed
    thread's stack points to. One value found: that one; several and none
    so placed: None rather than another worker's request."""
    found = []
    key = struct.pack("<H", len(name)) + name
    for start, end, bias in spans:
        at = data.find(key, start, end)
        while at >= 0 and len(found) < MAX_CANDIDATES:
            value_at = at + len(key) + 2
            if value_at <= end:
                (length,) = struct.unpack_from("<H", data, value_at - 2)
                if value_at + length <= end:
                    found.append((bias + value_at, data[value_at:value_at + length]))
            at = data.find(key, at + 1, end)
    if len(found) == 1:
        return found[0][1].decode("utf-8", "replace")[:1024]
    for address, value in found:
        if any(_from_stack(stack, where) for where in _references(data, spans, address)):
            return value.decode("utf-8", "replace")[:1024]
    return None


def _references(data: mmap.mmap, spans, address: int, most: int = 8) -> list[int]:
    """Addresses of (at most ``most``) 8-byte words holding ``address``."""
    out = []
    pointer = struct.pack("<Q", address)
    for start, end, bias in spans:
        at = data.find(pointer, start, end)
        while at >= 0 and len(out) < most:
            out.append(bias + at)
            at = data.find(pointer, at + 1, end)
    return out


def _from_stack(stack: list[int], where: int) -> bool:
    """Whether ``where`` is in the first STRUCT_BYTES of something the stack points to."""
    i = bisect.bisect_right(stack, where) - 1
    return i >= 0 and where - stack[i] < STRUCT_BYTES
