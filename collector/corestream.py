"""Stream the core from the kernel into ``core.zst``.

The source (the kernel's pipe, or the socket connection) is ALWAYS read to
its end, whatever happens, so the crashed process is never left hanging, and
released as soon as it is: with ``kernel.core_pipe_limit`` > 0 the kernel
holds the crashed process until then. A core that grows past
``max_core_size``, or leaves less than ``min_free_space`` (checked every
64 MiB), is removed and the rest of the stream drained.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

from collector.bundle import Bundle
from collector.policy import CapturePolicy, low_space
from collector.spool import create_file, free_space

CHUNK = 1 << 20  # read size from the kernel's pipe
PIPE_SIZE = 1 << 20  # asked of the kernel for stdin (fewer wake-ups)
FREE_CHECK_EVERY = 64 << 20


@dataclass(frozen=True)
class Streamed:
    size: int = 0  # uncompressed bytes read from the source
    compressed: int | None = None  # size of core.zst, None when not kept
    dropped: str | None = None  # why core.zst was removed half-way


def bigger_pipe(fd: int) -> None:
    """Fewer wake-ups. Only once /proc and the files are read: with
    core_pipe_limit = 0 the kernel holds the process just while the pipe is
    full, and a bigger pipe would let it go sooner."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


def release(fd: int = 0) -> None:
    """Close the kernel's pipe (``/dev/null`` takes its place, so the fd
    number stays valid for its owner)."""
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(null, fd)  # atomically closes the pipe
        os.close(null)
    except OSError:
        try:
            os.close(fd)
        except OSError:
            pass


def drain(fd: int = 0) -> int:
    """Read ``fd`` to its end, throwing it away, then release it. Returns the byte count."""
    total = 0
    buf = bytearray(CHUNK)
    while True:
        try:
            n = os.readv(fd, [buf])
        except InterruptedError:
            continue
        except OSError:
            break
        if n == 0:
            break
        total += n
    release(fd)
    return total


class _CoreFile:
    """``core.zst`` being written; ``discard`` removes it."""

    def __init__(self, bundle_fd: int, policy: CapturePolicy):
        import zstandard

        self.bundle_fd = bundle_fd
        self.fd = create_file(bundle_fd, Bundle.CORE)
        self.file = open(self.fd, "wb", buffering=CHUNK, closefd=False)
        self.writer = zstandard.ZstdCompressor(level=policy.compression_level,
                                               threads=policy.compression_threads).stream_writer(
            self.file, write_size=CHUNK, closefd=False)

    def finish(self) -> int:
        """End the frame, flush, fsync; the compressed size."""
        self.writer.close()  # closefd=False leaves ``file`` open
        self.file.close()  # closefd=False leaves ``fd`` open
        os.fsync(self.fd)
        size = os.fstat(self.fd).st_size
        os.close(self.fd)
        return size

    def discard(self, problems: list[str]) -> None:
        for closer in (self.writer, self.file):
            try:
                closer.close()
            except Exception:
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass
        try:
            os.unlink(Bundle.CORE, dir_fd=self.bundle_fd)
        except OSError as exc:
            problems.append(f"could not remove the partial core: {exc.strerror}")


def stream_core(src_fd: int, bundle_fd: int | None, policy: CapturePolicy, problems: list[str]) -> Streamed:
    """Read ``src_fd`` to its end and release it; compress it into
    ``core.zst`` when ``bundle_fd`` is given, until the policy says stop."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    core = _CoreFile(bundle_fd, policy) if bundle_fd is not None else None
    size, dropped, next_check = 0, None, FREE_CHECK_EVERY

    def stop(reason: str) -> None:
        nonlocal core, dropped
        dropped = reason
        core.discard(problems)
        core = None

    while True:
        try:
            n = os.readv(src_fd, [view])
        except InterruptedError:
            continue
        except OSError as exc:
            problems.append(f"reading the core from the kernel: {exc.strerror}")
            break
        if n == 0:
            break
        size += n
        if core is None:
            continue
        if size > policy.max_core_size:
            stop(f"core larger than max_core_size ({policy.max_core_size} bytes)")
            continue
        try:
            core.writer.write(view[:n])
            if size >= next_check:
                next_check += FREE_CHECK_EVERY
                reason = low_space(free_space(core.fd), policy)
                if reason:
                    stop(reason)
        except OSError as exc:
            stop(f"writing the core failed: {exc.strerror}")
    release(src_fd)
    compressed = None
    if core is not None:
        try:
            compressed = core.finish()
        except OSError as exc:
            stop(f"writing the core failed: {exc.strerror}")
    return Streamed(size=size, compressed=compressed, dropped=dropped)
