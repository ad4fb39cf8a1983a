"""A host's side of the upload to a central coretriage (stdlib only).

With ``server_url`` and ``server_token`` set, ``coretriage collector run``
hands each finished bundle to ``Uploader.submit`` instead of the analysis.
Workers (``upload_concurrency``) upload each one with the protocol of
``coretriage.receive`` (its docstring): ask which captured files the server
lacks and send only those, send the core (or the stack-only core when the
core is over ``upload_max_core``, or nothing but the metadata), resuming at
the offset the server has, then commit. Only the server's acknowledgement of
the commit marks the bundle done here and removes its cores, as the local
analysis would; until then the bundle stays in the spool, so an outage
delays a crash and never loses one.

One gate for the whole queue: a server that is down or answers 429, 503 or
507 pauses every worker (Retry-After, or a back-off doubling up to five
minutes), so an outage costs one wait, not one stall per bundle. One token
bucket bounds all uploads together to ``upload_bandwidth`` bytes/s. A
heartbeat thread reports this host's state every ``heartbeat_interval``.

The token is never logged. https verifies the server's certificate (against
``server_ca`` when set).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from analyzer.errors import CoretriageError
from collector import spool
from collector.bundle import Bundle

log = logging.getLogger("coretriage.upload")
API = "/ingest/v1"
REQUEST_BYTES = 8 << 20  # one PATCH (the server takes up to 16 MiB)
PIECE = 64 << 10
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class UploadSettings:
    url: str
    token: str
    data_dir: Path
    ca: str | None = None
    bandwidth: int = 0  # bytes/s, all uploads together; 0 = unlimited
    concurrency: int = 2
    max_core: int = 1 << 30  # compressed bytes; 0 = no limit
    heartbeat_interval: float = 60.0
    timeout: float = 60.0

    def __repr__(self) -> str:  # never the token
        return f"UploadSettings(url={self.url!r}, data_dir={str(self.data_dir)!r})"


class UploadError(CoretriageError):
    """A settings error or a refusal that retrying will not fix."""


class Busy(Exception):
    """The server is away or asks us to wait: the whole queue pauses."""

    def __init__(self, why: str, retry_after: float | None = None):
        super().__init__(why)
        self.retry_after = retry_after


class Refused(Exception):
    """The server refused this bundle (400, 413...): one line, kept as is."""

    def __init__(self, status: int, why: str, body: dict):
        super().__init__(f"{status}: {why}")
        self.status = status
        self.body = body


# ---- pacing: one gate and one bandwidth for the whole queue ----------------

class Gate:
    """Closed while the server is away; every worker waits at it."""

    def __init__(self):
        self._until = 0.0
        self._delay = 1.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._lock:
                left = self._until - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, 1.0))

    def close(self, retry_after: float | None) -> float:
        with self._lock:
            wait = retry_after if retry_after is not None else self._delay
            wait = min(max(wait, 0.5), MAX_BACKOFF)
            self._delay = min(self._delay * 2, MAX_BACKOFF)
            self._until = max(self._until, time.monotonic() + wait)
            return wait

    def open(self) -> None:
        with self._lock:
            self._delay = 1.0

    @property
    def closed(self) -> bool:
        return time.monotonic() < self._until


class Bandwidth:
    """A token bucket shared by every upload: ``rate`` bytes/s (0: no limit)."""

    def __init__(self, rate: int):
        self.rate = rate
        self._allowed = 0.0
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._allowed = min(self._allowed + (now - self._at) * self.rate, float(self.rate) / 4)
            self._at = now
            self._allowed -= n
            wait = -self._allowed / self.rate if self._allowed < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


# ---- HTTP ---------------------------------------------------------------------

class Server:
    def __init__(self, settings: UploadSettings):
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UploadError(f"server_url must be http(s)://host[:port]: {settings.url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/") + API
        self._token = settings.token
        self.timeout = settings.timeout
        self._context = None
        if self.https:
            self._context = ssl.create_default_context(cafile=settings.ca or None)  # verifies by default

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _headers(self, extra: dict | None = None) -> dict:
        return {"Authorization": f"Bearer {self._token}", "User-Agent": "coretriage-collector", **(extra or {})}

    def call(self, method: str, path: str, body: object = None, ok_statuses=(200,)) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers({"Content-Type": "application/json"} if data is not None else None)
        conn = self._connect()
        try:
            conn.request(method, self.prefix + path, body=data, headers=headers)
            return _answer(conn.getresponse(), ok_statuses)
        except (OSError, http.client.HTTPException) as exc:
            raise Busy(f"server unreachable: {exc}") from None
        finally:
            conn.close()

    def send_range(self, path: str, fd: int, offset: int, length: int, total: int, pace: Bandwidth,
                   stop: threading.Event) -> tuple[int, dict]:
        """PATCH ``length`` bytes of ``fd`` from ``offset``, paced."""
        conn = self._connect()
        try:
            conn.putrequest("PATCH", self.prefix + path, skip_accept_encoding=True)
            for k, v in self._headers({"Content-Type": "application/octet-stream", "Content-Length": str(length),
                                       "Upload-Offset": str(offset), "Upload-Length": str(total)}).items():
                conn.putheader(k, v)
            conn.endheaders()
            sent = 0
            while sent < length:
                if stop.is_set():
                    raise Busy("stopping")
                piece = os.pread(fd, min(PIECE, length - sent), offset + sent)
                if not piece:
                    raise UploadError("the file shrank while it was uploaded")
                pace.take(len(piece))
                conn.send(piece)
                sent += len(piece)
            return _answer(conn.getresponse(), (200, 409))
        except (OSError, http.client.HTTPException) as exc:
            raise Busy(f"server unreachable: {exc}") from None
        finally:
            conn.close()


def _answer(response: http.client.HTTPResponse, ok_statuses) -> tuple[int, dict]:
    raw = response.read(1 << 20)
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    status = response.status
    if status in ok_statuses:
        return status, body
    why = str(body.get("error") or response.reason)[:300]
    if status in (429, 502, 503, 504, 507) or status >= 500:
        retry = response.getheader("Retry-After")
        try:
            after = float(retry) if retry else None
        except ValueError:
            after = None
        raise Busy(f"{status}: {why}", after)
    if status in (401, 403):  # a revoked or wrong token: keep every bundle, try again much later
        raise Busy(f"{status}: {why} (check server_token)", MAX_BACKOFF)
    raise Refused(status, why, body)


# ---- one bundle -----------------------------------------------------------------

def _read_json(path: Path, limit: int = 64 << 20) -> object:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return json.loads(f.read(limit))


def _open_regular(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    import stat
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UploadError(f"{path} is not a regular file")
    return fd


def _sha256_fd(fd: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    pos = 0
    while chunk := os.pread(fd, 1 << 20, pos):
        digest.update(chunk)
        pos += len(chunk)
    return digest.hexdigest(), pos


@dataclass(frozen=True)
class Plan:
    """What one bundle sends: its meta as the server will store it, its
    files.json, and the cores (name -> path)."""

    meta: dict
    manifest: dict | None
    parts: dict


def plan_bundle(bundle_dir: Path, max_core: int, refused: str | None = None) -> Plan:
    """The meta says exactly what is sent: a core over ``max_core`` (or one
    the server ``refused``) stays here and the meta says why; a full core
    sent leaves the stack-only one."""
    b = Bundle(bundle_dir)
    meta = _read_json(b.meta)
    if not isinstance(meta, dict) or meta.get("id") != b.id:
        raise UploadError(f"{b.id}: meta.json is not this bundle's")
    parts: dict[str, Path] = {}
    core_size = b.core.stat().st_size if meta.get("core_file") and b.core.is_file() else None
    if core_size is not None and (max_core <= 0 or core_size <= max_core) and not refused:
        parts[Bundle.CORE] = b.core
    else:
        meta["core_file"] = None
        if core_size is not None and refused:
            meta["dropped"] = f"core.zst of {core_size} bytes refused by the server ({refused[:200]}): left on the host"
        elif core_size is not None:
            meta["dropped"] = (f"core.zst of {core_size} bytes is over upload_max_core ({max_core}): left in the "
                               "host's spool until its retention removes it")
        elif meta.get("core_file") is None and meta.get("dropped") is None and b.was_evicted():
            meta["dropped"] = "evicted to make room in the host's spool"
        if meta.get("stack_core_file") and b.stack_core.is_file():
            parts[Bundle.STACK] = b.stack_core
    if Bundle.STACK not in parts:
        meta["stack_core_file"] = None
    meta["core_kind"] = "full" if Bundle.CORE in parts else ("stack" if parts else "none")
    manifest = None
    if b.root.is_dir() and (b.dir / Bundle.FILES).is_file():
        found = _read_json(b.dir / Bundle.FILES, 16 << 20)
        manifest = found if isinstance(found, dict) else None
    return Plan(meta=meta, manifest=manifest, parts=parts)


class Uploader:
    def __init__(self, settings: UploadSettings):
        if not settings.token:
            raise UploadError("server_url is set but server_token is not (coretriage host add NAME on the server)")
        self.settings = settings
        self.server = Server(settings)
        self.spool_dir = Path(settings.data_dir) / "spool"
        self.gate = Gate()
        self.pace = Bandwidth(settings.bandwidth)
        self.stop = threading.Event()
        self._queue: queue.Queue[Path] = queue.Queue()
        self._queued: set[str] = set()
        self._refused: dict[str, float] = {}  # bundle id -> when a refusal may be retried
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.uploaded = 0

    # -- the queue ---------------------------------------------------------------
    def submit(self, bundle: Path) -> None:
        """Queue a bundle (the collector's hand-over); never blocks."""
        bundle = Path(bundle)
        with self._lock:
            if bundle.name in self._queued or self._refused.get(bundle.name, 0) > time.monotonic():
                return
            self._queued.add(bundle.name)
        self.start()
        self._queue.put(bundle)

    def waiting(self) -> int:
        return self._queue.qsize()

    def start(self, heartbeat: bool = False) -> None:
        with self._lock:
            if not self._threads:
                for n in range(max(1, self.settings.concurrency)):
                    t = threading.Thread(target=self._work, name=f"upload-{n}", daemon=True)
                    t.start()
                    self._threads.append(t)
            if heartbeat and not any(t.name == "heartbeat" for t in self._threads):
                t = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
                t.start()
                self._threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                bundle = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            again = False
            try:
                self.gate.wait(self.stop)
                if self.stop.is_set():
                    return
                if bundle.is_dir() and not spool.is_done(bundle):
                    self.upload(bundle)
                    self.gate.open()
            except Busy as exc:
                wait = self.gate.close(exc.retry_after)
                log.warning("upload of %s paused %.0f s: %s", bundle.name, wait, exc)
                again = True
            except Refused as exc:
                with self._lock:
                    self._refused[bundle.name] = time.monotonic() + 3600
                log.error("server refused bundle %s: %s (kept here; tried again in an hour)", bundle.name, exc)
            except Exception as exc:  # a bundle that cannot be read: logged, kept, tried on the next scan
                log.error("bundle %s not uploaded: %s", bundle.name,
                          str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            with self._lock:
                self._queued.discard(bundle.name)
            if again and not self.stop.is_set():
                self.submit(bundle)

    # -- one bundle --------------------------------------------------------------
    def upload(self, bundle_dir: Path, refused: str | None = None) -> None:
        """Send one bundle and commit it; on acknowledgement mark it done here
        and remove its cores (the server has them). Raises Busy or Refused.
        A full core the server finds too big (413) travels as its stack core."""
        bundle_dir = Path(bundle_dir)
        bid = bundle_dir.name
        plan = plan_bundle(bundle_dir, self.settings.max_core, refused)
        entries = [e for e in (plan.manifest or {}).get("files", []) if isinstance(e, dict)]
        if entries:
            self._send_files(bundle_dir, entries)
        parts = {}
        for name, path in plan.parts.items():
            fd = _open_regular(path)
            try:
                digest, size = _sha256_fd(fd)
                parts[name] = {"sha256": digest, "size": size}
                try:
                    self._send(f"/bundles/{bid}/parts/{name}", fd, size)
                except Refused as exc:
                    if exc.status != 413 or name != Bundle.CORE or refused:
                        raise
                    log.warning("server refused the core of %s as too big: sending its stack core", bid)
                    return self.upload(bundle_dir, refused=str(exc))
            finally:
                os.close(fd)
        body = {"meta": plan.meta, "files": plan.manifest, "parts": parts}
        for _ in range(3):
            status, answer = self.server.call("POST", f"/bundles/{bid}/commit", body, ok_statuses=(200, 409))
            if status == 200:
                break
            if answer.get("missing"):
                self._send_files(bundle_dir, entries, only=set(answer["missing"]))
            elif answer.get("part") in plan.parts:
                fd = _open_regular(plan.parts[answer["part"]])
                try:
                    self._send(f"/bundles/{bid}/parts/{answer['part']}", fd, parts[answer["part"]]["size"])
                finally:
                    os.close(fd)
            else:
                raise Refused(409, str(answer.get("error")), answer)
        else:
            raise Busy(f"bundle {bid}: the commit did not go through")
        self._acknowledged(bundle_dir, plan.parts)
        self.uploaded += 1
        log.info("uploaded %s (%s)", bid, ", ".join(f"{k} {v['size']} bytes" for k, v in parts.items())
                 or "metadata only")

    def _send_files(self, bundle_dir: Path, entries: list[dict], only: set[str] | None = None) -> None:
        by_hash = {e["sha256"]: e["path"] for e in entries
                   if isinstance(e.get("sha256"), str) and isinstance(e.get("path"), str)}
        if only is None:
            _, answer = self.server.call("POST", "/files/missing", {"sha256": sorted(by_hash)})
            only = set(answer.get("missing") or ())
        for digest in sorted(only):
            path = by_hash.get(digest)
            if path is None:
                continue
            local = Path(bundle_dir) / Bundle.ROOT / path.lstrip("/")
            fd = _open_regular(local)
            try:
                self._send(f"/files/{digest}", fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)

    def _send(self, path: str, fd: int, total: int) -> None:
        """Resumable: start where the server is; a 409 says where that is."""
        _, status = self.server.call("GET", path)
        if status.get("stored") or status.get("committed"):
            return
        offset = int(status.get("offset") or 0)
        if offset:
            log.info("resuming %s at byte %d of %d", path, offset, total)
        while offset < total or total == 0:
            length = min(REQUEST_BYTES, total - offset)
            code, answer = self.server.send_range(path, fd, offset, length, total, self.pace, self.stop)
            if answer.get("stored") or answer.get("committed"):
                return
            new = answer.get("offset")
            if code == 409 and new is None:
                raise Busy(str(answer.get("error")), 2)
            if not isinstance(new, int) or (code == 200 and new <= offset and length):
                raise Busy(f"the server kept {new} bytes of {path}", 2)
            offset = new
            if total == 0:
                return

    def _acknowledged(self, bundle_dir: Path, sent: dict) -> None:
        """The server has what was sent: those cores go, as the local analysis
        would remove them; a core too big to send stays with the done bundle
        until retention removes it."""
        for name in sent:
            try:
                os.unlink(Path(bundle_dir) / name)
            except FileNotFoundError:
                pass
        if Bundle.CORE in sent:  # the stack core beside an uploaded full core is of no more use
            Path(bundle_dir, Bundle.STACK).unlink(missing_ok=True)
        spool.mark_done(bundle_dir)

    # -- heartbeats ------------------------------------------------------------------
    def _heartbeats(self) -> None:
        while not self.stop.is_set():
            try:
                self.server.call("POST", "/heartbeat", host_report(Path(self.settings.data_dir), self.waiting(),
                                                                   self.settings.heartbeat_interval))
            except Busy as exc:
                log.warning("heartbeat not sent: %s", exc)
            except Refused as exc:
                log.error("heartbeat refused: %s", exc)
            except Exception as exc:  # never let the report stop the heartbeats
                log.error("heartbeat failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.stop.wait(self.settings.heartbeat_interval)


def host_report(data_dir: Path, queued: int, interval: float) -> dict:
    """The heartbeat: version, whether core_pattern is ours, doctor in
    short, the spool's size, bundles waiting to upload, the last crash."""
    from collector.corepattern import classify, read_pattern

    report: dict = {"interval": float(interval), "hostname": socket.gethostname()[:255]}
    try:
        from importlib.metadata import version
        report["version"] = version("coretriage")[:64]
    except Exception:
        report["version"] = "unknown"
    try:
        from collector.hostsetup import record
        try:
            rec = record.load(data_dir)
        except ValueError:
            rec = None
        pattern = read_pattern()
        report["core_pattern"] = pattern[:256]
        report["core_pattern_ours"] = classify(pattern, rec.core_pattern if rec else None).is_coretriage
    except (OSError, ImportError):
        pass
    try:
        from collector.hostsetup.doctor import run_checks
        # without the kernel's log: the collector's unit hides it (ProtectKernelLogs), so a
        # heartbeat says the same whether or not the collector runs under systemd
        report["doctor"] = [{"name": c.name[:80], "status": c.status, "message": c.message[:300]}
                            for c in run_checks(data_dir, docker=None, clock=None, kernel_log=None)][:64]
    except Exception:
        pass
    spool_dir = data_dir / "spool"
    size, waiting, last = 0, 0, None
    for bundle in spool.finished_bundles(spool_dir, include_done=True):
        try:
            last = max(last or 0.0, float(bundle.name.split("-", 1)[0]))
            if not spool.is_done(bundle):
                waiting += 1
            for entry in os.scandir(bundle):
                if entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_blocks * 512
        except (OSError, ValueError):
            continue
    report.update(spool_bytes=size, waiting=max(waiting, queued))
    if last is not None:
        report["last_crash_at"] = last
    return report
