"""Debug info for an analysis, looked for in the application, outside the sandbox.

The analysis sandbox has no network and cannot see the data dir. When gdb
lacks a module's debug info, the sandbox asks its parent for that build-id
(``analyzer.analyze``'s ``debug_file`` request); ``SymbolSource`` answers:

1. the local symbol store, ``DATA/symbols`` (``coretriage.symbols``);
2. the debuginfod servers of ``debuginfod_urls`` (``$DEBUGINFOD_URLS`` when
   the setting is unset; ``auto``: the public server of the crashed root's
   distribution, from its os-release), fetched here with a time limit for
   the whole analysis, checked (an ELF file of that very build-id) and
   filed in the store; a server's "not found" is remembered for
   ``symbol_miss_ttl``.

The crash's own captured files and ``/usr/lib/debug`` are read by the
analysis itself, before it asks. A server that hangs, refuses or answers
garbage costs at most ``debuginfod_timeout`` seconds and one line in the
analysis's problems; the analysis itself never fails for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from coretriage.symbols import BUILD_ID, DEBUGINFO, SymbolError, SymbolStore, elf_kind

# The public debuginfod servers of distributions, by os-release ID (then ID_LIKE).
PUBLIC_SERVERS = {
    "debian": "https://debuginfod.debian.net",
    "ubuntu": "https://debuginfod.ubuntu.com",
    "fedora": "https://debuginfod.fedoraproject.org",
    "arch": "https://debuginfod.archlinux.org",
    "archarm": "https://debuginfod.archlinux.org",
    "opensuse": "https://debuginfod.opensuse.org",
    "opensuse-leap": "https://debuginfod.opensuse.org",
    "opensuse-tumbleweed": "https://debuginfod.opensuse.org",
    "sles": "https://debuginfod.opensuse.org",
    "centos": "https://debuginfod.centos.stream",
    "almalinux": "https://debuginfod.centos.stream",
    "rocky": "https://debuginfod.centos.stream",
    "void": "https://debuginfod.s.voidlinux.org",
    "gentoo": "https://debuginfod.gentoo.org",
}
MAX_DOWNLOAD = 2 << 30


class FetchMiss(Exception):
    """The server does not have it (404)."""


class FetchError(Exception):
    """The server could not be used: timeout, refused, an error, garbage."""


def auto_servers(os_release: dict | None) -> tuple[str, ...]:
    """The public server for an os-release (its ID, else the first ID_LIKE known)."""
    if not isinstance(os_release, dict):
        return ()
    ids = [str(os_release.get("ID") or "")] + str(os_release.get("ID_LIKE") or "").split()
    for name in ids:
        if name.lower() in PUBLIC_SERVERS:
            return (PUBLIC_SERVERS[name.lower()],)
    return ()


def servers(setting: str | None, os_release: dict | None, environ=os.environ) -> tuple[str, ...]:
    """The servers an analysis asks, in order: the setting, else $DEBUGINFOD_URLS;
    ``auto`` in either stands for the crashed root's distribution's server."""
    text = setting if setting is not None else environ.get("DEBUGINFOD_URLS", "")
    out: list[str] = []
    for word in str(text).split():
        if word == "auto":
            out.extend(auto_servers(os_release))
        elif word.startswith(("http://", "https://")):
            out.append(word.rstrip("/"))
    return tuple(dict.fromkeys(out))


def fetch(server: str, build_id: str, kind: str, into: Path, timeout: float,
          max_bytes: int = MAX_DOWNLOAD) -> Path:
    """GET ``server/buildid/ID/kind`` into a new temporary file in ``into``
    within ``timeout`` seconds (the whole transfer, not each read). Raises
    FetchMiss (404) or FetchError; the caller checks and removes the file."""
    import socket  # here: a cold `coretriage ingest` with no server configured never loads HTTP
    import urllib.error
    import urllib.request

    if not BUILD_ID.fullmatch(build_id):
        raise FetchError(f"bad build-id {build_id!r}")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{server}/buildid/{build_id}/{kind}",
                                     headers={"User-Agent": "coretriage"})
    fd, tmp = tempfile.mkstemp(dir=into, prefix=".fetch-")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=max(timeout, 0.1)) as answer:
                    size = 0
                    while True:
                        if time.monotonic() > deadline:
                            raise FetchError(f"{server} did not send it within {timeout:g} s")
                        chunk = answer.read(1 << 16)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > max_bytes:
                            raise FetchError(f"{server} sent more than {max_bytes >> 20} MiB")
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise FetchMiss() from None
                raise FetchError(f"{server} answered HTTP {exc.code}") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(exc, TimeoutError):
                    raise FetchError(f"{server} did not answer within {timeout:g} s") from None
                raise FetchError(f"{server}: {str(reason)[:200]}") from None
            except Exception as exc:  # http.client's own errors on a garbled answer
                raise FetchError(f"{server} answered something that is not HTTP "
                                 f"({type(exc).__name__})") from None
        return Path(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class SymbolSource:
    """``source(build_id) -> (path or None, note or None)``, the parent's
    answer to the analysis sandbox. ``arrived``: the build-ids fetched
    during this analysis (their other crashes are re-analyzed)."""

    def __init__(self, store: SymbolStore, servers: tuple[str, ...], timeout: float, tmp_dir: Path):
        self.store = store
        self.servers = servers
        self.timeout = timeout
        self.tmp_dir = Path(tmp_dir)
        self.arrived: list[str] = []
        self.spent = 0.0
        self.failed: set[str] = set()  # servers that failed once in this analysis are not asked again
        self.noted = False

    def __call__(self, build_id: str) -> tuple[Path | None, str | None]:
        if not isinstance(build_id, str) or not BUILD_ID.fullmatch(build_id):
            return None, None
        found = self.store.lookup(build_id)
        if found is not None:
            return found, None
        if not self.servers or self.store.missed_recently(build_id):
            return None, None
        note = None
        missed = True
        for server in self.servers:
            if server in self.failed:
                missed = False
                continue
            left = self.timeout - self.spent
            if left <= 0:
                missed = False
                note = note or self._once(f"debuginfod: the {self.timeout:g} s for fetching symbols are spent; "
                                          "the other modules were not looked for")
                break
            started = time.monotonic()
            try:
                path = self._fetch_checked(server, build_id, left)
            except FetchMiss:
                continue
            except FetchError as exc:
                self.failed.add(server)
                missed = False
                note = note or self._once(f"debuginfod: {exc}; symbols from it not used")
                continue
            finally:
                self.spent += time.monotonic() - started
            if path is not None:
                self.arrived.append(build_id)
                return path, None
        if missed:
            self.store.note_miss(build_id)
        return None, note

    def _once(self, text: str) -> str | None:
        if self.noted:
            return None
        self.noted = True
        return text

    def _fetch_checked(self, server: str, build_id: str, timeout: float) -> Path | None:
        from coretriage.datadir import private_dirs

        private_dirs(self.tmp_dir)
        tmp = fetch(server, build_id, DEBUGINFO, self.tmp_dir, timeout)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                kind = elf_kind(fd)
                if kind is None or kind.build_id != build_id:
                    raise FetchError(f"{server} answered a file that is not the debug info of build-id "
                                     f"{build_id[:12]}")
                if not kind.debug:
                    raise FetchError(f"{server} answered a file without debug info for {build_id[:12]}")
                try:
                    self.store.add_fd(fd, kind, "debuginfod", server)
                except (SymbolError, OSError) as exc:
                    raise FetchError(f"fetched, but not stored: {exc}") from None
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return self.store.lookup(build_id)


def source_for(config, os_release: dict | None) -> SymbolSource:
    from coretriage.symbols import store_of

    return SymbolSource(store_of(config), servers(config.debuginfod_urls, os_release),
                        config.debuginfod_timeout, config.tmp_dir)
