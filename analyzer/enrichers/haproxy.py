"""HAProxy: version and build options, read from the binary that crashed;
and, when HAProxy has debug info (a build with -g, or its dbgsym package in
the symbol store), the stream the crashing thread was running: the request
line and Host header, the frontend and backend, the client's address and
the compression in play.

The stream is found the way HAProxy's own scheduler knows it: the thread's
``th_ctx->current`` task, when that task runs ``process_stream``, has the
stream as its context. The request is read from the stream's request
buffer, which holds HAProxy's internal HTTP representation (HTX): a table
of block descriptors growing down from the end of the area, and the blocks'
bytes. ``parse_htx`` decodes it; the layout's offsets come from the debug
info, so another HAProxy version with the same block format reads the same.
"""

from __future__ import annotations

import socket
import struct

from analyzer.enrichers import Probe, Target, search_file
from analyzer.model import Context
from analyzer.secrets import mask_text

PROGRAM = "haproxy"
STREAM = "((struct stream *)th_ctx->current->context)"
CONNECTION = f"((struct connection *){STREAM}->sess->origin)"
HTX = f"((struct htx *){STREAM}->req.buf.area)"
MAX_HTX = 1 << 20  # bytes of a request buffer read (tune.bufsize is 16 KiB by default)
MAX_FILTERS = 16
MAX_ALGOS = 8
BLK_REQ_SL, BLK_HDR, BLK_EOH = 0, 2, 3
SF_BE_ASSIGNED = 0x8  # stream flag (include/haproxy/stream-t.h): a backend rule has run


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
    fields.extend(stream_fields(probe, target.options.get("secret_names")))
    return Context(PROGRAM, tuple(fields)) if fields else None


def stream_fields(probe: Probe, secret_names=None) -> list[tuple[str, str]]:
    """What the crashing thread's stream was doing; nothing without debug
    info or when the thread was not running a stream."""
    task = probe.evaluate("th_ctx->current->process")
    if task is None:
        return [("stream", "not available: haproxy has no debug info here (add its dbgsym package with "
                           "`coretriage symbols add`, or build with -g)")]
    if "<process_stream>" not in task:
        return []  # another task or tasklet: no stream to show
    out = []
    request = _request(probe)
    if request is not None:
        method, uri, host = request
        masked = mask_text(uri, secret_names) if secret_names else mask_text(uri)
        out.append(("request", f"{method} {masked}"))
        if host:
            out.append(("host", host))
    frontend = probe.string(f"(char *){STREAM}->sess->fe->id")
    if frontend:
        out.append(("frontend", frontend))
    # until a switching rule (use_backend, default_backend) runs, the stream's
    # backend is its frontend: a name that would send the reader to the wrong section
    flags = _number(probe, f"(unsigned int){STREAM}->flags")
    backend = probe.string(f"(char *){STREAM}->be->id")
    if flags is not None and not flags & SF_BE_ASSIGNED:
        out.append(("backend", "not chosen yet (the request was still in its frontend's rules)"))
    elif backend:
        out.append(("backend", backend))
    client = _client(probe)
    if client:
        out.append(("client", client))
    compression = _compression(probe)
    if compression:
        out.append(("compression", compression))
    return out


def _number(probe: Probe, expression: str) -> int | None:
    value = probe.evaluate(expression)
    try:
        return int(value.split()[0], 0) if value else None
    except ValueError:
        return None


def _request(probe: Probe) -> tuple[str, str, str | None] | None:
    area = _number(probe, f"(unsigned long){STREAM}->req.buf.area")
    size, head, tail = (_number(probe, f"{HTX}->{f}") for f in ("size", "head", "tail"))
    blocks = _number(probe, "(long)&((struct htx *)0)->blocks")
    sl_len = _number(probe, "(long)&((struct htx_sl *)0)->len")
    sl_text = _number(probe, "(long)&((struct htx_sl *)0)->l")
    if None in (area, size, head, tail, blocks, sl_len, sl_text) or not area or not 0 < size <= MAX_HTX:
        return None
    raw = probe.read(area + blocks, size)
    return parse_htx(raw, head, tail, sl_len, sl_text) if raw else None


def parse_htx(raw: bytes, head: int, tail: int, sl_len: int = 8, sl_text: int = 20
              ) -> tuple[str, str, str | None] | None:
    """(method, URI, Host header) from an HTX message's blocks: block
    ``pos``'s descriptor (addr, info) is the ``pos+1``-th 8 bytes from the
    end; ``info``'s top 4 bits are its type, a start line's length is its
    low 28 bits, a header's name length its low 8 bits and its value length
    the next 20. Anything out of bounds ends the walk."""
    if head < 0 or tail < head:
        return None
    line, host = None, None
    for pos in range(head, min(tail, head + 256) + 1):
        at = len(raw) - (pos + 1) * 8
        if at < 0:
            break
        addr, info = struct.unpack_from("<II", raw, at)
        kind = info >> 28
        if kind == BLK_REQ_SL:
            length = info & 0xFFFFFFF
            if addr + length > at or length < sl_text:
                return None
            lens = struct.unpack_from("<III", raw, addr + sl_len)
            text = raw[addr + sl_text:addr + length]
            if sum(lens) > len(text):
                return None
            method, uri = text[:lens[0]], text[lens[0]:lens[0] + lens[1]]
            line = (method.decode("latin-1"), uri.decode("latin-1"))
        elif kind == BLK_HDR:
            name_len, value_len = info & 0xFF, (info >> 8) & 0xFFFFF
            if addr + name_len + value_len > at:
                break
            if raw[addr:addr + name_len].lower() == b"host":
                host = raw[addr + name_len:addr + name_len + value_len].decode("latin-1")
        elif kind == BLK_EOH:
            break
    return (line[0], line[1], host) if line else None


def _client(probe: Probe) -> str | None:
    address = _number(probe, f"(unsigned long){CONNECTION}->src")
    if probe.evaluate(f"*{STREAM}->sess->origin") != "OBJ_TYPE_CONN" or not address:
        return None
    raw = probe.read(address, 28)
    return parse_sockaddr(raw) if raw else None


def parse_sockaddr(raw: bytes) -> str | None:
    """``address:port`` from a sockaddr_in or sockaddr_in6 (Linux, little-endian host)."""
    if len(raw) < 8:
        return None
    family = struct.unpack_from("<H", raw)[0]
    port = struct.unpack_from(">H", raw, 2)[0]
    if family == socket.AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{port}"
    if family == socket.AF_INET6 and len(raw) >= 24:
        return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{port}"
    return None


def _compression(probe: Probe) -> str | None:
    """The algorithm the stream's compression filter chose, or, before the
    response picks one, the filter's configured algorithms."""
    head = f"&{STREAM}->strm_flt.filters"
    first = _number(probe, f"(unsigned long){STREAM}->strm_flt.filters.n")
    start = _number(probe, f"(unsigned long){head}")
    offset = _number(probe, "(long)&((struct filter *)0)->list")
    if None in (first, start, offset):
        return None
    node = first
    for _ in range(MAX_FILTERS):
        if not node or node == start:
            return None
        flt = f"((struct filter *){node - offset:#x})"
        if probe.string(f"(char *){flt}->config->id") == probe.string("(char *)http_comp_flt_id"):
            chosen = probe.string(f"(char *)((struct comp_state *){flt}->ctx)->comp_algo->cfg_name")
            if chosen:
                return chosen
            names = _algorithms(probe, f"{STREAM}->sess->fe->comp") + _algorithms(probe, f"{STREAM}->be->comp")
            configured = ", ".join(dict.fromkeys(names))
            return f"filter active, no algorithm chosen yet (configured: {configured or 'none'})"
        node = _number(probe, f"(unsigned long){flt}->list.n")
    return None


def _algorithms(probe: Probe, comp: str) -> list[str]:
    out = []
    algo = _number(probe, f"(unsigned long){comp}->algos")
    for _ in range(MAX_ALGOS):
        if not algo:
            break
        name = probe.string(f"(char *)((struct comp_algo *){algo:#x})->cfg_name")
        if name:
            out.append(name)
        algo = _number(probe, f"(unsigned long)((struct comp_algo *){algo:#x})->next")
    return out
