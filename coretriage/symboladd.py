"""``coretriage symbols add|list|remove``: the local symbol store by hand.

``add`` takes debug files, ``.build-id`` trees (or any directory) and
``.deb``/``.ddeb`` dbgsym packages. A package is unpacked with ``dpkg-deb
-x`` into a fresh directory under ``DATA/tmp``; the names inside are never
used as paths of ours: every regular file found there (symlinks are not
followed) is read, and kept by the build-id its own bytes carry. Everything
is checked before anything is stored, so a bad input stores nothing: a
corrupt package, a file that is not ELF, or (without ``--any``) a file
whose build-id no stored crash uses is a one-line error. The crashes that
lacked those symbols are then analyzed again (``coretriage.resymbol``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coretriage.symbols import ElfKind, SymbolError, open_elf, store_of

DPKG_TIMEOUT = 300
MAX_FILES = 100_000


@dataclass(frozen=True)
class Candidate:
    path: Path  # where it is now (a temporary unpack for a package)
    name: str  # what the user gave, for messages
    kind: ElfKind


def _walk(root: Path):
    """Regular files under ``root``, no symlink followed."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            count += 1
            if count > MAX_FILES:
                raise SymbolError(f"{root}: more than {MAX_FILES} files")
            yield path


def _check(path: Path) -> ElfKind | None:
    fd, kind = open_elf(path)
    os.close(fd)
    if kind is not None and not (kind.debug or kind.code):
        return None
    return kind


def _unpack(package: Path, into: Path) -> Path:
    dest = Path(tempfile.mkdtemp(dir=into, prefix="deb-"))
    try:
        done = subprocess.run(["dpkg-deb", "-x", "--", str(package), str(dest)], capture_output=True,
                              timeout=DPKG_TIMEOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SymbolError("dpkg-deb is not installed (apt-get install dpkg)") from None
    except subprocess.TimeoutExpired:
        raise SymbolError(f"{package}: dpkg-deb did not finish within {DPKG_TIMEOUT} s") from None
    if done.returncode != 0:
        why = next((line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines()
                    if line.strip()), f"exit status {done.returncode}")
        why = why.removeprefix("dpkg-deb: error: ")
        raise SymbolError(f"{package}: not a readable package: {''.join(c for c in why if c.isprintable())[:200]}")
    return dest


def gather(paths: list[Path], tmp: Path) -> list[Candidate]:
    """Every symbol file in ``paths``. A file named on its own that is not
    one, or a package or tree that holds none, is an error."""
    out: list[Candidate] = []
    for given in paths:
        if given.is_symlink() and not given.exists():
            raise SymbolError(f"{given}: a dangling symlink")
        if not given.exists():
            raise SymbolError(f"{given}: no such file or directory")
        if given.is_dir():
            tree, label = given, str(given)
        elif given.suffix in (".deb", ".ddeb"):
            tree, label = _unpack(given, tmp), str(given)
        else:
            given = given.resolve()  # named by the user: a link to it (as in /usr/lib/debug) is meant
            kind = _check(given)
            if kind is None:
                raise SymbolError(f"{given}: not an ELF file with a GNU build-id and symbols")
            out.append(Candidate(given, given.name, kind))
            continue
        found = 0
        for path in _walk(tree):
            try:
                kind = _check(path)
            except SymbolError:
                kind = None
            if kind is None:
                continue
            found += 1
            out.append(Candidate(path, f"{Path(label).name}:{path.name}", kind))
        if not found:
            raise SymbolError(f"{given}: holds no ELF file with a build-id and symbols")
    return out


def used_build_ids(store, build_ids: set[str]) -> set[str]:
    return {b for b in build_ids if store.crashes_mentioning(json.dumps(b))}


def add(config, store, paths: list[Path], any_build: bool = False, log=print) -> dict:
    """Check, store, re-analyze. Returns what was done."""
    from coretriage.datadir import private_dirs
    from coretriage.resymbol import symbols_arrived

    private_dirs(config.tmp_dir)
    tmp = Path(tempfile.mkdtemp(dir=config.tmp_dir, prefix="symbols-"))
    try:
        found = gather([Path(p) for p in paths], tmp)
        ids = {c.kind.build_id for c in found}
        used = used_build_ids(store, ids)
        if not any_build:
            unused = sorted(ids - used)
            # a file named alone must match; from a package or tree, the matching ones are taken
            named = {Path(p).resolve() for p in paths}
            alone = [c for c in found if c.kind.build_id in unused and c.path in named]
            if alone:
                c = alone[0]
                raise SymbolError(f"{c.path}: its build-id {c.kind.build_id} matches no stored crash; "
                                  "nothing was stored (--any keeps it for crashes to come)")
            if not used:
                raise SymbolError(f"{', '.join(map(str, paths))}: no build-id in it matches a stored crash; "
                                  "nothing was stored (--any keeps them for crashes to come)")
            found = [c for c in found if c.kind.build_id in used]
        symbols = store_of(config)
        stored = []
        for c in found:
            for entry in symbols.add_path(c.path, "upload", c.name):
                stored.append(entry)
                log(f"{entry.build_id} {entry.kind} {c.name}")
        arrived = sorted({e.build_id for e in stored})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = symbols_arrived(config, store, arrived, log=log) if arrived else {"crashes": 0, "renamed": 0,
                                                                               "merged": 0}
    return {"stored": len(stored), "build_ids": arrived, **result}
