"""A spool bundle: its file names (``Bundle``) and its ``meta.json`` (``BundleMeta``).

A bundle is ``SPOOL/<id>/`` holding ``core.zst`` (unless the core was
dropped), ``stack.zst`` (its stack-only core, ``collector.stackcore``; it
stays when ``core.zst`` is dropped or evicted), the process's files (``root/`` and ``files.json``) and
``meta.json``, which is written last, atomically: a bundle without
``meta.json`` is not finished. Names that came from the crashed
process (executable, comm, arguments, environment) are stored here only,
JSON-escaped, never used as a path; bytes that are not UTF-8 are kept as
``\\xNN`` escapes (``display``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

SCHEMA = 1
_BUNDLE_ID = re.compile(r"[0-9]{10,20}-[0-9]{1,10}-[0-9a-f]{8}")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def display(raw: bytes | str) -> str:
    """Text for names and values from the crashed process: UTF-8, with any
    other byte as a ``\\xNN`` escape. Never used to build a path."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def _sender(found) -> dict | None:
    """meta.json's signal_sender, checked: integers and a short name."""
    if not isinstance(found, dict):
        return None
    pid, uid, comm = found.get("pid"), found.get("uid"), found.get("comm")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (pid, uid)):
        return None
    return {"pid": pid, "uid": uid, "comm": comm[:64] if isinstance(comm, str) else None}


def bundle_id(crash_time: int, pid: int, random_hex: str) -> str:
    """Time-sortable and unique: ``<crash time, 10+ digits>-<pid>-<8 hex>``."""
    value = f"{max(int(crash_time), 0):010d}-{int(pid)}-{random_hex}"
    if not is_bundle_id(value):
        raise ValueError(f"not a bundle id: {value!r}")
    return value


def is_bundle_id(value: object) -> bool:
    return isinstance(value, str) and _BUNDLE_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Bundle:
    """One bundle directory and the names of what it holds. The writing side
    (the handler) works on directory fds and uses the names alone; the
    reading side (daemon, pipeline) uses the paths."""

    CORE: ClassVar[str] = "core.zst"  # zstd; absent when the core was dropped or evicted
    STACK: ClassVar[str] = "stack.zst"  # the stack-only core (collector.stackcore), zstd; outlives core.zst
    META: ClassVar[str] = "meta.json"  # written last, atomically: the bundle is finished
    DONE: ClassVar[str] = "done"  # marker: handed to the analysis
    EVICTED: ClassVar[str] = "evicted"  # marker: core removed to make room in the spool
    ROOT: ClassVar[str] = "root"  # the process's own files, a sysroot for the analysis
    FILES: ClassVar[str] = "files.json"  # what root/ links: path -> sha256 (collector.sysroot)

    dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", Path(self.dir))

    @property
    def id(self) -> str:
        return os.path.basename(os.path.normpath(self.dir))

    @property
    def core(self) -> Path:
        return self.dir / self.CORE

    @property
    def stack_core(self) -> Path:
        return self.dir / self.STACK

    @property
    def meta(self) -> Path:
        return self.dir / self.META

    @property
    def root(self) -> Path:
        return self.dir / self.ROOT

    def is_finished(self) -> bool:
        return self.meta.is_file() and not self.meta.is_symlink()

    def is_done(self) -> bool:
        return os.path.lexists(self.dir / self.DONE)

    def was_evicted(self) -> bool:
        return os.path.lexists(self.dir / self.EVICTED)


def remove_files(bundle_fd: int) -> None:
    """Drop the bundle's process files (``root/`` and ``files.json``): a
    bundle without its core has no use for them."""
    import shutil

    try:
        shutil.rmtree(Bundle.ROOT, dir_fd=bundle_fd)
    except OSError:
        pass
    try:
        os.unlink(Bundle.FILES, dir_fd=bundle_fd)
    except OSError:
        pass


@dataclass(frozen=True)
class BundleMeta:
    id: str
    pid: int  # %P, in the initial pid namespace
    signal: int  # %s
    crash_time: int  # %t, seconds since the epoch (the kernel's clock)
    host_time: float  # time.time() when the handler started
    tid: int | None = None  # %i, crashing thread in its own pid namespace (as in the core's notes)
    host_tid: int | None = None  # %I, the same thread in the initial pid namespace
    ns_pid: int | None = None  # the pid inside the process's pid namespace (NSpid)
    uid: int | None = None  # %u (real uid), cross-checked with /proc status
    gid: int | None = None  # %g
    dump_mode: int | None = None  # %d: 1 normal; 2 set-uid/non-dumpable dumped as root-only
    hostname: str = ""
    exe: str | None = None  # readlink /proc/PID/exe, or %E when that failed
    comm: str = ""  # %e
    cmdline: tuple[str, ...] = ()  # masked
    cwd: str | None = None
    environ: dict[str, str] = field(default_factory=dict)  # masked
    cgroup: str | None = None  # the /proc/PID/cgroup text
    container_id: str | None = None  # 64 lowercase hex, or None (on the host)
    container_runtime: str | None = None
    pod_uid: str | None = None
    namespaces: dict[str, str] = field(default_factory=dict)  # "pid": "pid:[4026531836]", ...
    maps: tuple[str, ...] = ()  # mapped file paths, in address order, each once
    core_file: str | None = None  # "core.zst", or None when the core was dropped
    core_size: int = 0  # uncompressed bytes read from the kernel (the whole core unless stopped_reading)
    core_compressed_size: int | None = None
    core_kind: str = "full"  # "full" (core.zst), "stack" (stack.zst only) or "none" (neither)
    stack_core_file: str | None = None  # "stack.zst", the stack-only core (also beside a full core)
    stack_core_size: int | None = None  # its uncompressed size
    stack_core_compressed_size: int | None = None
    dropped: str | None = None  # why the full core was not kept
    # why the handler stopped reading before the end of the core and closed
    # the pipe, releasing the process (max_core_size, the wall-clock budget, a
    # core dropped before reading); core_size is then what was read, and a
    # kept core.zst is its first part (its notes complete: threads, registers,
    # mapped files)
    stopped_reading: str | None = None
    # why the core is to be deleted once analyzed (a set-uid or non-dumpable
    # process, dump mode 2, under setuid_cores = "analyze-then-delete"); the
    # pipeline deletes it and keeps the analysis
    delete_core_after_analysis: str | None = None
    problems: tuple[str, ...] = ()
    handler_seconds: float | None = None  # handler start to meta written
    # set by a central server that received the bundle from a host (coretriage.receive):
    # hostname is then the host's registered name, and this what the host said it was
    claimed_hostname: str | None = None
    uploaded_by: str | None = None  # the registered name of the host whose token sent it
    uploaded_at: float | None = None
    os_release: dict[str, str] | None = None  # the crashed root's os-release (collector.osrelease)
    # {"pid", "uid", "comm"} of the process that sent the fatal signal (kill, sigqueue), its pid in the
    # crashed process's pid namespace; comm None when it was gone (collector.sender)
    signal_sender: dict | None = None
    schema: int = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        # ensure_ascii: every control character and non-ASCII letter is escaped
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "BundleMeta":
        if not isinstance(data, dict):
            raise ValueError("meta.json: not an object")
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # newer fields are ignored
        for name in ("id", "pid", "signal", "crash_time", "host_time"):
            if name not in values:
                raise ValueError(f"meta.json: missing {name}")
        if not is_bundle_id(values["id"]):
            raise ValueError(f"meta.json: bad id {values['id']!r}")
        for name in ("cmdline", "maps", "problems"):
            if name in values:
                if not isinstance(values[name], list) or not all(isinstance(x, str) for x in values[name]):
                    raise ValueError(f"meta.json: {name} is not a list of strings")
                values[name] = tuple(values[name])
        for name in ("environ", "namespaces"):
            if name in values and not isinstance(values[name], dict):
                raise ValueError(f"meta.json: {name} is not an object")
        if "os_release" in values:  # only short strings: it is shown and picks a debuginfod server
            found = values["os_release"]
            values["os_release"] = {k: v[:120] for k, v in found.items() if isinstance(k, str) and isinstance(
                v, str) and len(k) < 32} or None if isinstance(found, dict) else None
        if "signal_sender" in values:
            values["signal_sender"] = _sender(values["signal_sender"])
        if values.get("container_id") is not None and not _CONTAINER_ID.fullmatch(str(values["container_id"])):
            raise ValueError("meta.json: container_id is not 64 lowercase hex digits")
        for name in ("pid", "signal", "crash_time", "core_size"):
            if name in values and (isinstance(values[name], bool) or not isinstance(values[name], int)):
                raise ValueError(f"meta.json: {name} is not an integer")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> "BundleMeta":
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"meta.json: {exc}") from None
        return cls.from_dict(data)
