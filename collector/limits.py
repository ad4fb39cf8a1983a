"""The pipe handler's limits: safe defaults, overridden by ``<data-dir>/collector.toml``.

Example ``collector.toml`` (every key optional; sizes in bytes or with a
K/M/G/T suffix, powers of 1024)::

    max_core_size = "8G"        # bigger cores are dropped; the crash is still recorded
    min_free_space = "2G"       # keep this much free on the spool filesystem
    max_spool_use = "8G"        # cores waiting for analysis; the oldest are evicted first
    rate_limit = 10             # cores kept per executable ...
    rate_window = 60            # ... per this many seconds; beyond: dropped, crash recorded
                                # (rate_limit = 0 keeps no cores at all, only the crashes)
    compression_level = 1       # zstd level, -7 (fastest, biggest) to 19; 1 keeps up with the kernel
    compression_threads = 0     # zstd worker threads (0: none); helps big cores on idle hosts
    secret_names = ["*PASSWORD*", "*TOKEN*", "*MY_PRIVATE_THING*"]
    capture_files = true        # keep the crashed process's executable and libraries (once per build-id)
    no_core = ["*/postgres"]    # these crash without their core leaving the host: metadata only

Built on demand, never at import; ``tomllib`` is only imported when the file
exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from collector.secrets import DEFAULT_SECRET_NAMES

CONFIG_NAME = "collector.toml"
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class LimitsError(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    max_core_size: int = 16 << 30
    min_free_space: int = 1 << 30
    max_spool_use: int = 8 << 30  # cores waiting for analysis; beyond, the oldest are evicted
    rate_limit: int = 10
    rate_window: float = 60.0
    compression_level: int = 1
    compression_threads: int = 0  # zstd worker threads; 0 compresses in the handler's own thread
    secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES
    capture_files: bool = True  # keep the mapped executable and libraries (once per build-id)
    max_file_size: int = 1 << 30
    # executables (fnmatch on the path, e.g. "*/postgres") whose memory must
    # never leave the host: the crash and its metadata are kept, no core
    no_core: tuple[str, ...] = ()

    def keeps_core(self, exe: str | None) -> bool:
        from fnmatch import fnmatchcase

        return not any(fnmatchcase(exe or "", p) for p in self.no_core)


def parse_size(value: object) -> int:
    if isinstance(value, bool):
        raise LimitsError(f"not a size: {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _SUFFIXES else ""
        number = text[: len(text) - len(unit)].strip()
        try:
            size = int(float(number) * _SUFFIXES[unit])
        except ValueError:
            raise LimitsError(f"not a size: {value!r}") from None
    else:
        raise LimitsError(f"not a size: {value!r}")
    if size < 0:
        raise LimitsError(f"negative size: {value!r}")
    return size


def limits_from_dict(values: dict) -> Limits:
    known = {f.name for f in fields(Limits)}
    unknown = set(values) - known
    if unknown:
        raise LimitsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    out: dict = {}
    for name in ("max_core_size", "min_free_space", "max_spool_use"):
        if name in values:
            out[name] = parse_size(values[name])
    if "rate_limit" in values:
        v = values["rate_limit"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise LimitsError(f"rate_limit: a count >= 0, not {v!r}")
        out["rate_limit"] = v
    if "rate_window" in values:
        v = values["rate_window"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise LimitsError(f"rate_window: seconds > 0, not {v!r}")
        out["rate_window"] = float(v)
    if "compression_level" in values:
        v = values["compression_level"]
        if isinstance(v, bool) or not isinstance(v, int) or not -7 <= v <= 19:
            raise LimitsError(f"compression_level: -7 (fastest) to 19, not {v!r}")
        out["compression_level"] = v
    if "compression_threads" in values:
        v = values["compression_threads"]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 64:
            raise LimitsError(f"compression_threads: 0 to 64, not {v!r}")
        out["compression_threads"] = v
    if "max_file_size" in values:
        out["max_file_size"] = parse_size(values["max_file_size"])
    if "capture_files" in values:
        if not isinstance(values["capture_files"], bool):
            raise LimitsError("capture_files: true or false")
        out["capture_files"] = values["capture_files"]
    if "no_core" in values:
        v = values["no_core"]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            raise LimitsError("no_core: a list of executable path patterns")
        out["no_core"] = tuple(v)
    if "secret_names" in values:
        v = values["secret_names"]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            raise LimitsError("secret_names: a list of name patterns")
        out["secret_names"] = tuple(v)
    return Limits(**out)


def load_limits(data_dir: str | os.PathLike | None) -> Limits:
    """``Limits`` from ``<data_dir>/collector.toml``, defaults when absent.
    A file that exists but is broken raises ``LimitsError``."""
    if data_dir is None:
        return Limits()
    path = os.path.join(os.fspath(data_dir), CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        return Limits()
    except OSError as exc:
        raise LimitsError(f"{path}: {exc.strerror}") from None
    import tomllib

    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LimitsError(f"{path}: {exc}") from None
    try:
        return limits_from_dict(values)
    except LimitsError as exc:
        raise LimitsError(f"{path}: {exc}") from None
