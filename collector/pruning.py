"""Retention: done bundles and captured files that nothing needs go by themselves.

The capture side never deletes what it made (``collector.retention`` only
evicts cores of waiting bundles to make room for a new one), so without
this ``DATA/spool`` and ``DATA/files`` grow for ever. The collector daemon
runs ``prune`` every ``interval`` seconds with the references its store
gives (``References``: what stored crashes still need).

What may go (``plan``, pure):

- a bundle that has been analyzed (``done``) and that no stored crash holds
  (a crash stored before ``files.json`` existed holds its bundle, whose
  ``root/`` is its only record of its files);
- a captured file (``DATA/files/...``) that no stored crash refers to, that
  is not listed by a bundle that stays, and that no bundle's ``root/`` links
  (its link count is 1).

Of those, what is older than ``max_age`` goes; then, while done bundles and
captured files together take more than ``max_size``, the oldest go first.
Nothing younger than ``grace`` goes (a handler may be linking it right now),
and a file referenced by a stored crash or an unprocessed bundle never goes,
whatever the limits: if they alone are over ``max_size`` the plan says so.

Settings, in ``DATA/collector.toml`` (sizes as in ``collector.policy``)::

    [retention]
    max_age = "14d"      # s, m, h or d; or a number of seconds
    max_size = "20G"     # done bundles and captured files together
    interval = "1h"      # how often the collector daemon prunes
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from analyzer.errors import CoretriageError
from collector.bundle import Bundle, is_bundle_id

CONFIG_NAME = "collector.toml"
SHA256_DIR = "sha256"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class RetentionError(CoretriageError):
    """A bad ``[retention]`` table in collector.toml."""


@dataclass(frozen=True)
class RetentionLimits:
    max_age: float = 14 * 86400.0
    max_size: int = 20 << 30
    interval: float = 3600.0
    grace: float = 600.0  # nothing younger is pruned, whatever the limits


@dataclass(frozen=True)
class SpooledBundle:
    id: str
    done: bool
    time: float  # when it was analyzed (its done marker), else when it was written
    size: int  # its own bytes; root/ holds links to captured files, counted there
    files: frozenset[str]  # store keys its files.json lists ("sha256/<hex>")


@dataclass(frozen=True)
class StoredFile:
    key: str  # path under DATA/files: "sha256/<hex>", or "<build-id>/<name>" (the old layout)
    size: int
    time: float  # last use: the handler touches a stored file each time a crash links it
    links: int  # st_nlink: more than 1 while some bundle's root/ links it


@dataclass(frozen=True)
class References:
    """What stored crashes still need: captured files by key, and bundles
    held whole (crashes stored before ``files.json``)."""

    files: frozenset[str] = frozenset()
    bundles: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Plan:
    bundles: tuple[str, ...]
    files: tuple[str, ...]
    freed: int
    total: int  # bytes of done bundles and captured files before pruning
    over: int  # bytes still above max_size after it: what references hold


# ---- the decision ----

def plan(bundles: list[SpooledBundle], files: list[StoredFile], refs: References, limits: RetentionLimits,
         now: float) -> Plan:
    """What to prune. Pure: the same inputs give the same plan."""
    by_key = {f.key: f for f in files}
    protected = set(refs.files)
    candidates: list[SpooledBundle] = []
    for b in bundles:
        if b.done and b.id not in refs.bundles and now - b.time > limits.grace:
            candidates.append(b)
        else:
            protected |= b.files  # waiting for analysis, held, or just done
    links = {f.key: f.links for f in files}
    listed_by: dict[str, int] = {}
    for b in candidates:
        for key in b.files:
            listed_by[key] = listed_by.get(key, 0) + 1

    def free_file(f: StoredFile) -> bool:
        # linked only by the store itself and by bundles that may go (whose
        # own links are gone once they are)
        return (f.key not in protected and now - f.time > limits.grace
                and links[f.key] - listed_by.get(f.key, 0) <= 1)

    pruned_bundles: list[str] = []
    pruned_files: list[str] = []
    gone: set[str] = set()
    total = sum(b.size for b in bundles) + sum(f.size for f in files)
    freed = 0

    def drop_bundle(b: SpooledBundle) -> None:
        nonlocal freed
        pruned_bundles.append(b.id)
        freed += b.size
        for key in b.files:
            if key in links:
                links[key] -= 1
                listed_by[key] -= 1

    def drop_file(f: StoredFile) -> None:
        nonlocal freed
        pruned_files.append(f.key)
        gone.add(f.key)
        freed += f.size

    # everything past max_age, bundles first (their links go with them)
    young: list[SpooledBundle] = []
    for b in sorted(candidates, key=lambda b: (b.time, b.id)):
        if now - b.time > limits.max_age:
            drop_bundle(b)
        else:
            young.append(b)
    for f in sorted(files, key=lambda f: (f.time, f.key)):
        if now - f.time > limits.max_age and free_file(f) and links[f.key] <= 1:
            drop_file(f)

    # then the oldest first while over max_size; a bundle's files may become free as it goes
    heap: list[tuple[float, int, str, str]] = [(b.time, 0, b.id, "bundle") for b in young]
    queued: set[str] = set()
    for f in files:
        if f.key not in gone and free_file(f) and links[f.key] <= 1:
            heap.append((f.time, 1, f.key, "file"))
            queued.add(f.key)
    heapq.heapify(heap)
    young_by_id = {b.id: b for b in young}
    while total - freed > limits.max_size and heap:
        _, _, ident, kind = heapq.heappop(heap)
        if kind == "bundle":
            b = young_by_id[ident]
            drop_bundle(b)
            for key in b.files:
                f = by_key.get(key)
                if f is not None and key not in queued and free_file(f) and links[key] <= 1:
                    heapq.heappush(heap, (f.time, 1, key, "file"))
                    queued.add(key)
        elif ident not in gone and links[ident] <= 1:
            drop_file(by_key[ident])
    return Plan(bundles=tuple(pruned_bundles), files=tuple(pruned_files), freed=freed, total=total,
                over=max(0, total - freed - limits.max_size))


# ---- settings ----

def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool):
        raise RetentionError(f"[retention] {name}: not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = text[-1:] if text[-1:] in _UNITS and not text[-1:].isdigit() else ""
        try:
            seconds = float(text[: len(text) - len(unit)]) * _UNITS[unit]
        except ValueError:
            raise RetentionError(f"[retention] {name}: not a duration: {value!r} (e.g. 3600, \"30m\", \"14d\")") \
                from None
    else:
        raise RetentionError(f"[retention] {name}: not a duration: {value!r}")
    if seconds <= 0:
        raise RetentionError(f"[retention] {name}: must be more than 0, not {value!r}")
    return seconds


def _size(value: object, name: str) -> int:
    """A size as collector.toml writes them everywhere ("20G", 1024)."""
    from collector.policy import PolicyError, parse_size

    try:
        return parse_size(value)
    except PolicyError as exc:
        raise RetentionError(f"[retention] {name}: {exc} (e.g. \"20G\")") from None


def limits_from_dict(values: object) -> RetentionLimits:
    if not isinstance(values, dict):
        raise RetentionError("[retention] must be a table")
    unknown = set(values) - {"max_age", "max_size", "interval"}
    if unknown:
        raise RetentionError(f"[retention]: unknown setting(s): {', '.join(sorted(unknown))}")
    out: dict = {}
    for name in ("max_age", "interval"):
        if name in values:
            out[name] = _seconds(values[name], name)
    if "max_size" in values:
        out["max_size"] = _size(values["max_size"], "max_size")
    return RetentionLimits(**out)


def load_limits(data_dir: str | os.PathLike) -> RetentionLimits:
    """The ``[retention]`` table of ``DATA/collector.toml``; defaults without one."""
    import tomllib

    path = os.path.join(os.fspath(data_dir), CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            values = tomllib.loads(f.read(1 << 20).decode("utf-8"))
    except FileNotFoundError:
        return RetentionLimits()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RetentionError(f"{path}: {exc}") from None
    try:
        return limits_from_dict(values.get("retention", {}))
    except RetentionError as exc:
        raise RetentionError(f"{path}: {exc}") from None


# ---- the filesystem ----

def _own_size(bundle_dir: Path) -> int:
    size = 0
    for entry in os.scandir(bundle_dir):
        if entry.name != Bundle.ROOT and entry.is_file(follow_symlinks=False):
            size += entry.stat(follow_symlinks=False).st_blocks * 512
    return size


def _manifest_keys(bundle_dir: Path) -> frozenset[str]:
    if not (bundle_dir / Bundle.ROOT).is_dir():
        return frozenset()  # core dropped or evicted: root/ went, the list names nothing held
    try:
        fd = os.open(bundle_dir / Bundle.FILES, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return frozenset()
    try:
        with open(fd, "rb") as f:
            data = json.loads(f.read(16 << 20))
        return frozenset(f"{SHA256_DIR}/{e['sha256']}" for e in data.get("files", [])
                         if isinstance(e, dict) and isinstance(e.get("sha256"), str)
                         and len(e["sha256"]) == 64 and "/" not in e["sha256"])
    except (ValueError, AttributeError, OSError):
        return frozenset()


def scan_spool(spool_dir: Path) -> list[SpooledBundle]:
    """Every bundle directory, finished or not (an unfinished one is a
    handler still writing: it is never a candidate)."""
    out = []
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not is_bundle_id(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        bundle = Bundle(path)
        try:
            done = bundle.is_finished() and bundle.is_done()
            when = os.stat(path / (Bundle.DONE if done else "."), follow_symlinks=False).st_mtime
            out.append(SpooledBundle(entry.name, done, when, _own_size(path), _manifest_keys(path)))
        except OSError:
            continue  # removed meanwhile
    return out


def scan_files(files_dir: Path) -> list[StoredFile]:
    """Every captured file: ``sha256/<hex>`` and the old ``<build-id>/<name>``."""
    out = []
    try:
        dirs = list(os.scandir(files_dir))
    except FileNotFoundError:
        return out
    for d in dirs:
        if not d.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(d.path))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out.append(StoredFile(f"{d.name}/{entry.name}", st.st_blocks * 512, st.st_mtime, st.st_nlink))
    return out


def _remove_bundle(spool_dir: Path, bundle_id: str, refs: References) -> bool:
    path = spool_dir / bundle_id
    if bundle_id in refs.bundles or not Bundle(path).is_done():
        return False
    shutil.rmtree(path)  # symlink-safe: rmtree never follows one out of the tree
    return True


def _remove_file(files_dir: Path, key: str, seen: StoredFile) -> bool:
    """Unlink a captured file unless it changed since the scan: linked into a
    bundle, or touched by a handler that is about to link it."""
    directory, _, name = key.partition("/")
    dir_fd = os.open(files_dir / directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if st.st_nlink > 1 or st.st_mtime != seen.time:
            return False
        os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if directory != SHA256_DIR:  # an old-layout build-id directory left empty
        try:
            os.rmdir(files_dir / directory)
        except OSError:
            pass
    return True


STALE_SCRATCH = 6 * 3600  # far beyond any analysis' deadline
SCRATCH_PREFIXES = ("core-", "sysroot-", "sandbox-")  # coretriage.ingest's and analyzer.sandbox's


def _remove_stale_scratch(tmp_dir: Path, before: float) -> None:
    """Copies of cores an analysis left in DATA/tmp when it was killed (a
    set-uid process's among them): gone once far older than any analysis."""
    try:
        entries = list(os.scandir(tmp_dir))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.name.startswith(SCRATCH_PREFIXES) and entry.is_dir(follow_symlinks=False) \
                    and entry.stat(follow_symlinks=False).st_mtime < before:
                shutil.rmtree(entry.path)
        except OSError:
            continue


def prune(data_dir: str | os.PathLike, refs: References, limits: RetentionLimits,
          now: float | None = None) -> Plan:
    """Scan ``DATA/spool`` and ``DATA/files``, decide, remove. ``refs`` must
    be read from the store just before: a file it misses may be removed."""
    data = Path(data_dir)
    spool_dir, files_dir = data / "spool", data / "files"
    bundles, files = scan_spool(spool_dir), scan_files(files_dir)
    decided = plan(bundles, files, refs, limits, time.time() if now is None else now)
    removed_bundles, removed_files = [], []
    for bundle_id in decided.bundles:
        try:
            if _remove_bundle(spool_dir, bundle_id, refs):
                removed_bundles.append(bundle_id)
        except OSError:
            continue
    _remove_stale_scratch(data / "tmp", (time.time() if now is None else now) - STALE_SCRATCH)
    by_key = {f.key: f for f in files}
    for key in decided.files:
        try:
            if _remove_file(files_dir, key, by_key[key]):
                removed_files.append(key)
        except OSError:
            continue
    sizes = {b.id: b.size for b in bundles} | {f.key: f.size for f in files}
    freed = sum(sizes[i] for i in removed_bundles) + sum(sizes[k] for k in removed_files)
    return Plan(bundles=tuple(removed_bundles), files=tuple(removed_files), freed=freed, total=decided.total,
                over=decided.over)
