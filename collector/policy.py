"""The capture policy: keep a crash's full core, its stack-only core, or the metadata only.

``CapturePolicy`` is ``<data-dir>/collector.toml`` (safe defaults when a key
or the file is absent); ``decide`` applies it to one crash before its core
is read: make room in the spool (the oldest cores go), free space,
``no_core``, ``setuid_cores``, the crash-storm rate limits. A core kept
as ``none`` is never read: the handler closes the pipe at once.

Example ``collector.toml`` (every key optional; sizes in bytes or with a
K/M/G/T suffix, powers of 1024)::

    max_core_size = "16G"       # the full core stops here: reading goes on for the stack core, which
                                # is kept instead; should the budget end first, the first part of the
                                # full core is kept (partial)
    max_core_seconds = 60       # wall-clock budget per core, from the handler's start: past it,
                                # likewise (a 64 GiB sparse mapping cannot hold a pipe slot longer)
    min_free_space = "2G"       # keep this much free on the spool filesystem
    max_spool_use = "8G"        # cores waiting for analysis; the oldest are evicted first
    rate_limit = 10             # cores kept per build (the executable's build-id, else a hash of
                                # its content) and container ...
    host_rate_limit = 30        # ... and over all crashes on the host ...
    rate_window = 60            # ... per this many seconds; beyond: the stack core (stack_rate_limit)
                                # (rate_limit = 0 keeps no cores at all, only the crashes)
    setuid_cores = "analyze-then-delete"  # dump mode 2 (set-uid or non-dumpable processes, whose
                                # cores the kernel makes root-only): "keep", "analyze-then-delete"
                                # (the core goes once analyzed) or "drop" (never read)
    compression_level = 1       # zstd level, -7 (fastest, biggest) to 19; 1 keeps up with the kernel
    compression_threads = 0     # zstd worker threads (0: none); helps big cores on idle hosts
    secret_names = ["*PASSWORD*", "*TOKEN*", "*MY_PRIVATE_THING*"]
    capture_files = true        # keep the crashed process's executable and libraries (stored once per content)
    no_core = ["*/postgres"]    # these crash without their full core leaving the host ...
    no_core_kind = "stack"      # ... keeping their stack-only core ("none": the metadata only)
    stack_cores = true          # beside each core, its stack-only core (collector.stackcore): every
                                # thread's stack, the files' written data; what a crash keeps when
                                # its full core is not kept (over max_core_size or rate_limit, no_core)
    stack_globals_max = "4M"    # of the files' written data (.data, .bss) in a stack core, at most
    stack_min_free_space = "256M"  # below min_free_space: stack cores only, down to this much free
    stack_rate_limit = 30       # past rate_limit: stack cores kept per build and container ...
    stack_host_rate_limit = 100 # ... and over the host, per rate_window; beyond: the metadata only

    [retention]                 # read by collector.pruning: done bundles and unneeded files
    max_age = "14d"

Built on demand, never at import; ``tomllib`` is only imported when the file
exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields

from analyzer.errors import CoretriageError
from collector import ratelimit
from collector.retention import make_room
from analyzer.secrets import DEFAULT_SECRET_NAMES
from collector.spool import free_space

CONFIG_NAME = "collector.toml"
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
SETUID_CHOICES = ("keep", "analyze-then-delete", "drop")
DUMP_MODE_ROOT_ONLY = 2  # %d: the kernel dumped a set-uid or non-dumpable process (fs.suid_dumpable=2)


class PolicyError(CoretriageError):
    pass


@dataclass(frozen=True)
class CapturePolicy:
    max_core_size: int = 16 << 30  # read no further: the pipe is closed, the first part kept
    max_core_seconds: float = 60.0  # wall-clock budget per core, from the handler's start
    min_free_space: int = 1 << 30
    max_spool_use: int = 8 << 30  # cores waiting for analysis; beyond, the oldest are evicted
    rate_limit: int = 10  # cores kept per build and container per window
    host_rate_limit: int = 30  # cores kept over all crashes on the host per window
    rate_window: float = 60.0
    setuid_cores: str = "analyze-then-delete"  # dump mode 2: one of SETUID_CHOICES
    compression_level: int = 1
    compression_threads: int = 0  # zstd worker threads; 0 compresses in the handler's own thread
    secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES
    capture_files: bool = True  # keep the mapped executable and libraries (stored once per content)
    max_file_size: int = 1 << 30
    # executables (fnmatch on the path, e.g. "*/postgres") whose memory must
    # never leave the host: the crash and its metadata are kept, no core
    no_core: tuple[str, ...] = ()
    no_core_kind: str = "stack"  # what a no_core crash keeps: its stack core, or "none" (metadata only)
    stack_cores: bool = True  # write the stack-only core beside every core read (collector.stackcore)
    stack_globals_max: int = 4 << 20  # the files' written data kept in a stack core, at most
    stack_min_free_space: int = 256 << 20  # below min_free_space, stack cores are kept down to this
    stack_rate_limit: int = 30  # past rate_limit, stack cores kept per build and container per window ...
    stack_host_rate_limit: int = 100  # ... and over the host

    def keeps_core(self, exe: str | None) -> bool:
        from fnmatch import fnmatchcase

        return not any(fnmatchcase(exe or "", p) for p in self.no_core)


def parse_size(value: object) -> int:
    if isinstance(value, bool):
        raise PolicyError(f"not a size: {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _SUFFIXES else ""
        number = text[: len(text) - len(unit)].strip()
        try:
            size = int(float(number) * _SUFFIXES[unit])
        except ValueError:
            raise PolicyError(f"not a size: {value!r}") from None
    else:
        raise PolicyError(f"not a size: {value!r}")
    if size < 0:
        raise PolicyError(f"negative size: {value!r}")
    return size


def policy_from_dict(values: dict) -> CapturePolicy:
    known = {f.name for f in fields(CapturePolicy)}
    # the [retention] table belongs to collector.pruning, which reads it itself
    unknown = set(values) - known - {"retention"}
    if unknown:
        raise PolicyError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    out: dict = {}
    for name in ("max_core_size", "min_free_space", "max_spool_use", "stack_min_free_space"):
        if name in values:
            out[name] = parse_size(values[name])
    for name in ("rate_limit", "host_rate_limit", "stack_rate_limit", "stack_host_rate_limit"):
        if name in values:
            v = values[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise PolicyError(f"{name}: a count >= 0, not {v!r}")
            out[name] = v
    if "max_core_seconds" in values:
        v = values["max_core_seconds"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
            raise PolicyError(f"max_core_seconds: seconds, more than 0 and at most a day, not {v!r}")
        out["max_core_seconds"] = float(v)
    if "setuid_cores" in values:
        v = values["setuid_cores"]
        if v not in SETUID_CHOICES:
            raise PolicyError(f"setuid_cores: one of {', '.join(SETUID_CHOICES)}, not {v!r}")
        out["setuid_cores"] = v
    if "rate_window" in values:
        v = values["rate_window"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise PolicyError(f"rate_window: seconds > 0, not {v!r}")
        out["rate_window"] = float(v)
    if "compression_level" in values:
        v = values["compression_level"]
        if isinstance(v, bool) or not isinstance(v, int) or not -7 <= v <= 19:
            raise PolicyError(f"compression_level: -7 (fastest) to 19, not {v!r}")
        out["compression_level"] = v
    if "compression_threads" in values:
        v = values["compression_threads"]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 64:
            raise PolicyError(f"compression_threads: 0 to 64, not {v!r}")
        out["compression_threads"] = v
    if "max_file_size" in values:
        out["max_file_size"] = parse_size(values["max_file_size"])
    if "capture_files" in values:
        if not isinstance(values["capture_files"], bool):
            raise PolicyError("capture_files: true or false")
        out["capture_files"] = values["capture_files"]
    if "no_core" in values:
        v = values["no_core"]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            raise PolicyError("no_core: a list of executable path patterns")
        out["no_core"] = tuple(v)
    if "no_core_kind" in values:
        if values["no_core_kind"] not in ("stack", "none"):
            raise PolicyError(f"no_core_kind: stack or none, not {values['no_core_kind']!r}")
        out["no_core_kind"] = values["no_core_kind"]
    if "stack_cores" in values:
        if not isinstance(values["stack_cores"], bool):
            raise PolicyError("stack_cores: true or false")
        out["stack_cores"] = values["stack_cores"]
    if "stack_globals_max" in values:
        out["stack_globals_max"] = parse_size(values["stack_globals_max"])
    if "secret_names" in values:
        v = values["secret_names"]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            raise PolicyError("secret_names: a list of name patterns")
        out["secret_names"] = tuple(v)
    return CapturePolicy(**out)


def load_policy(data_dir: str | os.PathLike | None) -> CapturePolicy:
    """``CapturePolicy`` from ``<data_dir>/collector.toml``, defaults when absent.
    A file that exists but is broken raises ``PolicyError``."""
    if data_dir is None:
        return CapturePolicy()
    path = os.path.join(os.fspath(data_dir), CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        return CapturePolicy()
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror}") from None
    import tomllib

    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    try:
        return policy_from_dict(values)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


def low_space(free: int, policy: CapturePolicy, stack: bool = False) -> str | None:
    """Why a full core (or with ``stack``, a stack core) is dropped when
    ``free`` bytes are left, or None."""
    floor, name = ((policy.stack_min_free_space, "stack_min_free_space") if stack
                   else (policy.min_free_space, "min_free_space"))
    if free < floor:
        return f"low disk space: {free} bytes left on the spool filesystem ({name} {floor})"
    return None


def setuid_rule(policy: CapturePolicy, dump_mode: int | None) -> str | None:
    """What ``setuid_cores`` says of this crash: None for an ordinary one
    (dump mode 1), else the setting with its reason."""
    if dump_mode != DUMP_MODE_ROOT_ONLY:
        return None
    return (f"set-uid or non-dumpable process (dump mode 2, a root-only core): "
            f"setuid_cores = {policy.setuid_cores}")


@dataclass(frozen=True)
class Kept:
    """What one crash keeps: ``full`` (its core, and its stack core beside),
    ``stack`` (the stack-only core, ``collector.stackcore``) or ``none``
    (the metadata); ``why`` says why not the full core."""

    kind: str
    why: str | None = None


def decide(policy: CapturePolicy, spool_fd: int, bundle_id: str, exe: str | None, dump_mode: int | None,
           rate_key: Callable[[], str], problems: list[str]) -> Kept:
    """What to keep of one crash, decided before its core is read (a
    ``none`` core is never read). ``rate_key()`` names the build and
    container for the rate limits; only called when it is needed. Past
    ``rate_limit``, stack cores are kept while ``stack_rate_limit`` allows."""
    try:
        evicted = make_room(spool_fd, policy.max_spool_use, policy.min_free_space, bundle_id)
        if evicted:
            problems.append(f"made room: cores of {len(evicted)} older bundles evicted "
                            f"({evicted[0]}{' ...' if len(evicted) > 1 else ''})")
    except OSError as exc:
        problems.append(f"making room in the spool: {exc.strerror}")
    if policy.setuid_cores == "drop":  # first: no other rule may keep any of its memory
        why = setuid_rule(policy, dump_mode)
        if why is not None:
            return Kept("none", why)
    stack = "stack" if policy.stack_cores else "none"
    try:
        free = free_space(spool_fd)
    except OSError as exc:
        free = None
        problems.append(f"statvfs on the spool: {exc.strerror}")
    if free is not None and (why := low_space(free, policy)) is not None:
        # disk pressure: the stack core (a few hundred KiB) while its own floor allows
        return Kept(stack if low_space(free, policy, stack=True) is None else "none", why)
    if not policy.keeps_core(exe):
        return Kept(stack if policy.no_core_kind == "stack" else "none",
                    "no_core policy for this executable (collector.toml)")
    key = rate_key()
    why, problem = ratelimit.check(spool_fd, key, policy.rate_limit, policy.host_rate_limit, policy.rate_window)
    if problem:
        problems.append(problem)
    if why is None:
        return Kept("full")
    if stack == "stack":
        over, problem = ratelimit.check(spool_fd, "stack:" + key, policy.stack_rate_limit,
                                        policy.stack_host_rate_limit, policy.rate_window, host="stack:host")
        if problem:
            problems.append(problem)
        if over is None:
            return Kept("stack", why)
        why = f"{why}; stack cores: {over.removeprefix('rate limit: ')} (stack_rate_limit)"
    return Kept("none", why)
