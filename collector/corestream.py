"""Stream the core from the kernel into ``core.zst``, within limits.

The source (the kernel's pipe, or the socket connection) is read until its
end, ``max_core_size`` bytes, or the wall-clock deadline, whichever comes
first, and then released (closed): with ``kernel.core_pipe_limit`` > 0 the
kernel holds the crashed process until then, so neither a huge sparse
mapping (gigabytes of zeros) nor a process whose memory reads slowly can
hold the handler, or one of the kernel's ``core_pipe_limit`` slots, for
longer than the budget. Reads never block past the deadline (the source is
made non-blocking and polled). Closing the pipe early makes the kernel's
next write fail, which ends the dump and lets the process go.

A core cut short this way is kept when the part read holds its notes
(``collector.corehead``): the threads, registers and mapped files; else it
is dropped. ``Streamed.stopped`` says why reading stopped. A core that
leaves less than ``min_free_space`` (checked every 64 MiB) or cannot be
written is dropped, and reading stops there too.
"""

from __future__ import annotations

import fcntl
import os
import select
import time
from dataclasses import dataclass

from collector.bundle import Bundle
from collector.corehead import NotACore, notes_end
from collector.policy import CapturePolicy, low_space
from collector.spool import create_file, free_space

CHUNK = 1 << 20  # read size from the kernel's pipe
PIPE_SIZE = 1 << 20  # asked of the kernel for stdin (fewer wake-ups)
FREE_CHECK_EVERY = 64 << 20
HEAD_MAX = 8 << 20  # most bytes kept to find the end of the notes (65,530 mappings take 3.6 MiB)


@dataclass(frozen=True)
class Streamed:
    size: int = 0  # uncompressed bytes read from the source
    compressed: int | None = None  # size of core.zst, None when not kept
    dropped: str | None = None  # why core.zst was removed
    stopped: str | None = None  # why reading stopped before the end of the core


def bigger_pipe(fd: int) -> None:
    """Fewer wake-ups. Only once /proc and the files are read: with
    core_pipe_limit = 0 the kernel holds the process just while the pipe is
    full, and a bigger pipe would let it go sooner."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


def release(fd: int = 0) -> None:
    """Close the kernel's pipe, read to its end or not: that releases the
    crashed process (``/dev/null`` takes the fd's place, so the number stays
    valid for its owner)."""
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(null, fd)  # atomically closes the pipe
        os.close(null)
    except OSError:
        try:
            os.close(fd)
        except OSError:
            pass


def _nonblocking(fd: int) -> bool:
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        return True
    except OSError:
        return False


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


class _Head:
    """The first bytes of the core, until they tell where its notes end."""

    def __init__(self) -> None:
        self.buf: bytearray | None = bytearray()
        self.needed: int | None = None  # bytes a partial core must hold; None: not known (yet)

    def feed(self, data) -> None:
        self.buf += data
        try:
            self.needed = notes_end(self.buf)
        except NotACore:
            self.buf = None  # never of use cut short
            return
        if self.needed is not None or len(self.buf) >= HEAD_MAX:
            self.buf = None

    def holds_notes(self, size: int) -> bool:
        return self.needed is not None and size >= self.needed


def stream_core(src_fd: int, bundle_fd: int, policy: CapturePolicy, deadline: float,
                problems: list[str]) -> Streamed:
    """Compress ``src_fd`` into ``core.zst`` until its end, ``max_core_size``
    or ``deadline`` (``time.monotonic()``); release it in every case."""
    limit = policy.max_core_size
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    core: _CoreFile | None = None
    head = _Head()
    size, dropped, stopped, next_check = 0, None, None, FREE_CHECK_EVERY
    poller = select.poll()
    poller.register(src_fd, select.POLLIN)
    if not _nonblocking(src_fd):
        problems.append("the core's source could not be made non-blocking: the budget is checked between reads")
    try:
        core = _CoreFile(bundle_fd, policy)
        while True:
            # one byte past the limit tells a bigger core from one of exactly max_core_size
            want = min(CHUNK, limit + 1 - size)
            try:
                n = os.readv(src_fd, [view[:want]])
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    stopped = f"wall-clock budget spent (max_core_seconds = {policy.max_core_seconds:g})"
                    break
                poller.poll(int(left * 1000) + 1)
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                problems.append(f"reading the core from the kernel: {exc.strerror}")
                break
            if n == 0:
                break
            size += n
            keep = n - max(0, size - limit)
            if keep:
                core.writer.write(view[:keep])
                if head.buf is not None:
                    head.feed(view[:keep])
            if size > limit:
                stopped = f"max_core_size reached ({limit} bytes)"
                break
            if size >= next_check:
                next_check += FREE_CHECK_EVERY
                reason = low_space(free_space(core.fd), policy)
                if reason:
                    dropped = stopped = reason
                    break
            if time.monotonic() > deadline:
                stopped = f"wall-clock budget spent (max_core_seconds = {policy.max_core_seconds:g})"
                break
    except OSError as exc:
        dropped = stopped = f"writing the core failed: {exc.strerror}"
    finally:
        release(src_fd)
    kept = min(size, limit)
    if stopped and not dropped and not head.holds_notes(kept):
        dropped = f"{stopped}, before the core's notes were complete ({kept} bytes read)"
    compressed = None
    if core is not None and not dropped:
        try:
            compressed = core.finish()
        except OSError as exc:
            dropped = f"writing the core failed: {exc.strerror}"
    if core is not None and dropped:
        core.discard(problems)
    return Streamed(size=size, compressed=compressed, dropped=dropped, stopped=stopped)
