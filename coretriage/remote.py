"""Workers on machines without the central data dir.

A worker that shares the central data dir (one file system path) reads the
bundle where the ingest API left it. A worker elsewhere shares only the
central configuration's database_url, broker_url and queue_name, and names
the central web server (``central_url``) and the workers' credential
(``worker_token``, which the central server's own coretriage.toml sets too,
turning ``/worker/v1`` on; ``webui/workerapi.py`` is its HTTP adapter).
For each bundle id it takes from the queue, such a worker:

- asks for the bundle (``GET /worker/v1/bundles/<id>``: meta.json,
  files.json and the sizes of its cores) and fetches the captured files its
  own ``DATA/files/sha256`` lacks (``GET /worker/v1/files/<sha256>``, each
  checked against its hash): a cache by content hash, so a libc crosses the
  network once per worker, not once per crash. The cores follow
  (``GET /worker/v1/bundles/<id>/<core.zst|stack.zst>``, checked by size);
  all of it is staged and renamed into ``DATA/fetched/<id>`` in one step;
- analyzes it as any bundle (``coretriage.pipeline.process_bundle``: one
  record per bundle, claimed in the shared database);
- tells the central server (``POST /worker/v1/bundles/<id>/done``), which
  links its copy of the core where the crash record says (``cores/``),
  records its own paths for the executable and sysroot, and marks its
  bundle done, so the core download and ``coretriage gdb`` work there;
- drops its fetched bundle and its own copy of the core; the files stay,
  the least recently used going once they pass ``worker_cache_size``.

A worker killed at any point is harmless: the message comes again, a crash
stored already is not analyzed again, and ``done`` is idempotent. A central
server that cannot be reached is ``CentralAway``: the task tries again later.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from analyzer.errors import CoretriageError
from collector.spool import write_all

API = "/worker/v1"
CHUNK = 1 << 20
TIMEOUT = 60.0


class RemoteError(CoretriageError):
    """The central server refused a worker's request, or answered nonsense."""


class CentralAway(CoretriageError):
    """The central server cannot be reached or is busy: try again later."""


def fetched_dir(config) -> Path:
    return config.data_dir / "fetched"


# ---- the central server's side (webui/workerapi.py) ----------------------------

def bundle_listing(config, bid: str) -> dict | None:
    """What a worker needs to know of a received bundle, or None when there
    is none: its meta, files.json and the sizes of the cores it holds."""
    from collector.bundle import Bundle, is_bundle_id
    from coretriage.receive import PARTS

    if not is_bundle_id(bid):
        return None
    bundle = Bundle(config.spool_dir / bid)
    try:
        meta = json.loads(bundle.meta.read_bytes())
    except FileNotFoundError:
        return None
    files_path = bundle.dir / Bundle.FILES
    files = json.loads(files_path.read_bytes()) if files_path.is_file() else None
    parts = {p: (bundle.dir / p).stat().st_size for p in PARTS if (bundle.dir / p).is_file()}
    return {"meta": meta, "files": files, "parts": parts, "done": bundle.is_done()}


def part_path(config, bid: str, part: str) -> Path | None:
    from collector.bundle import is_bundle_id
    from coretriage.receive import PARTS

    if not is_bundle_id(bid) or part not in PARTS:
        return None
    path = config.spool_dir / bid / part
    return path if path.is_file() and not path.is_symlink() else None


def stored_file(config, digest: str) -> Path | None:
    from collector.sysroot import is_sha256

    if not is_sha256(digest):
        return None
    path = config.files_dir / "sha256" / digest
    return path if path.is_file() and not path.is_symlink() else None


def finish(config, store, bid: str) -> dict | None:
    """A remote worker stored the crash of received bundle ``bid``: keep its
    core here at the record's ``core_file``, point the record at this data
    dir's executable and sysroot, and mark the bundle done. Idempotent; None
    when no crash of that bundle is stored (nothing to finish)."""
    from collector.bundle import Bundle
    from collector.spool import mark_done
    from coretriage.datadir import private_dirs

    row = store.crash_of_bundle(bid)
    if row is None:
        return None
    bundle = Bundle(config.spool_dir / bid)
    if bundle.dir.is_dir() and not bundle.is_done():
        kept = False
        if row.core_file:
            source = bundle.core if row.meta.get("core_kind") == "full" else bundle.stack_core
            dest = config.data_dir / _under_cores(row.core_file)
            if source.is_file():
                private_dirs(dest.parent)
                try:
                    os.link(source, dest)
                except FileExistsError:
                    pass
            kept = dest.is_file()
        store.relocate_files(row.id, _stored_here(config, row.exe_file),
                             str(bundle.root) if bundle.root.is_dir() else None)
        if kept or not row.core_file:  # set-uid crashes too: analyzed, then gone
            bundle.core.unlink(missing_ok=True)
            bundle.stack_core.unlink(missing_ok=True)
        mark_done(bundle.dir)
    return {"crash": row.id, "core": bool(row.core_file and (config.data_dir / row.core_file).is_file())}


def _under_cores(path: str) -> str:
    """A record's ``core_file`` as the worker wrote it: ``cores/<name>``,
    nothing else (a link made from it must stay in this data dir's cores)."""
    parts = PurePosixPath(path).parts
    if len(parts) != 2 or parts[0] != "cores" or parts[1] in ("..", "."):
        raise RemoteError(f"a stored crash names its core {path[:80]!r}, not cores/<name>")
    return path


def _stored_here(config, path: str | None) -> str | None:
    """The worker's ``.../files/sha256/<hex>`` as this data dir's path."""
    from collector.sysroot import is_sha256

    if not path:
        return None
    name = PurePosixPath(path).name
    here = config.files_dir / "sha256" / name
    return str(here) if PurePosixPath(path).parent.name == "sha256" and is_sha256(name) and here.is_file() else None


# ---- the worker's side --------------------------------------------------------

class Central:
    """The central server's worker API (stdlib HTTP; https verifies)."""

    def __init__(self, config):
        from urllib.parse import urlsplit

        if not config.worker_token:
            raise RemoteError("central_url is set but worker_token is not (the central server's worker_token)")
        parts = urlsplit(config.central_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"central_url must be http(s)://host[:port]: {config.central_url!r}")
        self.base = config.central_url.rstrip("/") + API
        self._token = config.worker_token
        self._context = ssl.create_default_context(cafile=config.central_ca or None) if parts.scheme == "https" \
            else None
        # a worker's environment may name a proxy for other traffic; the central server is reached directly
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   urllib.request.HTTPSHandler(context=self._context))

    def _open(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "User-Agent": "coretriage-worker",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            return self._opener.open(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            try:
                why = str(json.loads(exc.read(1 << 16)).get("error"))[:300]
            except (ValueError, AttributeError, OSError):
                why = exc.reason
            if exc.code == 429 or exc.code >= 500:  # busy, away or full (507): later
                raise CentralAway(f"the central server answered {exc.code}: {why}") from None
            raise RemoteError(f"the central server refused {method} {path}: {exc.code}: {why}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise CentralAway(f"the central server cannot be reached: {getattr(exc, 'reason', exc)}") from None

    def json(self, method: str, path: str, body: dict | None = None) -> dict | None:
        response = self._open(method, path, body)
        if response is None:
            return None
        with response:
            try:
                answer = json.loads(response.read(64 << 20))
            except ValueError:
                raise RemoteError(f"{path}: the central server's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise RemoteError(f"{path}: the central server's answer is not a JSON object")
        return answer

    def download(self, path: str, fd: int, limit: int) -> tuple[int, str] | None:
        """Write the body into ``fd``: (bytes, sha256), or None on 404; at
        most ``limit`` bytes are taken."""
        response = self._open("GET", path)
        if response is None:
            return None
        digest, size = hashlib.sha256(), 0
        try:
            with response:
                while chunk := response.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise RemoteError(f"{path}: more than the {limit} bytes expected")
                    digest.update(chunk)
                    write_all(fd, chunk)
        except (OSError, ValueError) as exc:
            if isinstance(exc, RemoteError):
                raise
            raise CentralAway(f"{path}: the download broke off: {exc}") from None
        return size, digest.hexdigest()


def cached_file(config, central: Central, digest: str) -> Path:
    """``DATA/files/sha256/<digest>``, fetched when this machine lacks it."""
    from coretriage.datadir import private_dirs

    stored = config.files_dir / "sha256" / digest
    if stored.is_file():
        try:
            os.utime(stored)  # used now: the cache's trim keeps it longer
        except OSError:
            pass
        return stored
    private_dirs(stored.parent)
    fd, tmp = tempfile.mkstemp(dir=stored.parent, prefix=".fetch-")
    try:
        got = central.download(f"/files/{digest}", fd, config.ingest_max_file)
        if got is None:
            raise RemoteError(f"the central server has no file {digest[:16]}...")
        if got[1] != digest:
            raise RemoteError(f"file {digest[:16]}... from the central server does not have that sha256")
        os.fsync(fd)
        try:
            os.link(tmp, stored)
        except FileExistsError:
            pass  # another task of this worker fetched it meanwhile
    finally:
        os.close(fd)
        os.unlink(tmp)
    return stored


def trim_cache(config) -> int:
    """Remove the least recently used fetched files until those no fetched
    bundle links to fit in ``worker_cache_size``; the bytes freed. Only a
    remote worker's own data dir: the central one's files are its store."""
    where = config.files_dir / "sha256"
    found = []
    try:
        with os.scandir(where) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False) and st.st_nlink == 1:
                    found.append((st.st_mtime, st.st_blocks * 512, entry.path))
    except FileNotFoundError:
        return 0
    total = sum(size for _, size, _ in found)
    freed = 0
    for _, size, path in sorted(found):
        if total - freed <= config.worker_cache_size:
            break
        try:
            os.unlink(path)
            freed += size
        except FileNotFoundError:
            continue
    return freed


def fetch_bundle(config, central: Central, bid: str) -> Path | None:
    """The bundle as ``DATA/fetched/<bid>``, or None when the central server
    holds no such bundle, or holds it done."""
    from collector.bundle import Bundle
    from coretriage.datadir import private_dirs
    from coretriage.receive import PARTS, link_into, manifest_entries, write_new

    target = fetched_dir(config) / bid
    if (target / Bundle.META).is_file():
        return target  # fetched before this worker (or another task) was stopped
    info = central.json("GET", f"/bundles/{bid}")
    if info is None or info.get("done"):
        return None
    meta, parts = info.get("meta"), info.get("parts")
    if not isinstance(meta, dict) or meta.get("id") != bid or not isinstance(parts, dict) \
            or not all(p in PARTS and isinstance(n, int) and not isinstance(n, bool) and n >= 0
                       for p, n in parts.items()):
        raise RemoteError(f"bundle {bid}: the central server's description of it is malformed")
    entries = manifest_entries(info.get("files"))  # paths checked as a host's upload's are
    where = private_dirs(fetched_dir(config))
    for old in where.glob(".*"):  # what a worker killed mid-fetch left, an hour on
        try:
            if old.lstat().st_mtime < time.time() - 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    staging = where / f".{bid}.{os.urandom(4).hex()}"
    staging.mkdir(mode=0o700)
    try:
        if entries:
            root = staging / Bundle.ROOT
            root.mkdir(mode=0o700)
            for entry in entries:
                try:
                    link_into(root, entry["path"], cached_file(config, central, entry["sha256"]))
                except FileNotFoundError:  # trimmed from the cache in between: fetched again
                    link_into(root, entry["path"], cached_file(config, central, entry["sha256"]))
            write_new(staging / Bundle.FILES, json.dumps({"schema": 1, "files": entries}, indent=1).encode())
        for part, size in parts.items():
            fd = os.open(staging / part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                got = central.download(f"/bundles/{bid}/{part}", fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
            if got is None or got[0] != size:
                raise CentralAway(f"bundle {bid}: {part} came {got and got[0]} bytes of {size}; try again")
        write_new(staging / Bundle.META, json.dumps(meta, indent=1).encode())  # last: the bundle is finished
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / Bundle.META).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def analyze_fetched(wiring, bid: str) -> dict:
    """One queued bundle on a worker without the central data dir (the
    Celery task's body there). Raises ``coretriage.claims.BundleBusy`` while
    another worker analyzes it, ``CentralAway`` while the server is away."""
    config, store = wiring.config, wiring.store
    central = Central(config)
    row = store.crash_of_bundle(bid)
    if row is None:
        bundle = fetch_bundle(config, central, bid)
        if bundle is None:
            return {"bundle": bid, "skipped": "the central server has no such bundle, or it is done"}
        done = wiring.process_bundle(bundle)
        result = {"bundle": bid, "crash_id": done.crash.id, "group_id": done.crash.group_ref, "new": done.new} \
            if done is not None else {"bundle": bid, "skipped": "already done"}
        row = store.crash_of_bundle(bid)
    else:
        result = {"bundle": bid, "crash_id": row.id, "skipped": "stored already"}
    central.json("POST", f"/bundles/{bid}/done", {})
    # the central data dir holds the core now; what this worker fetched goes (its files stay, the cache)
    local = fetched_dir(config) / bid
    if local.is_dir():
        if row is not None and row.core_file:
            (config.data_dir / row.core_file).unlink(missing_ok=True)
        shutil.rmtree(local, ignore_errors=True)
        trim_cache(config)
    return result
