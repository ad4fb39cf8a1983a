"""Stream the core from the kernel into ``core.zst``, within limits.

The source (the kernel's pipe, or the socket connection) is read until its
end, ``max_core_size`` bytes (or on, for the stack core, see below), or the
wall-clock deadline, whichever comes first, and then released (closed): with ``kernel.core_pipe_limit`` > 0 the
kernel holds the crashed process until then, so neither a huge sparse
mapping (gigabytes of zeros) nor a process whose memory reads slowly can
hold the handler, or one of the kernel's ``core_pipe_limit`` slots, for
longer than the budget. Reads never block past the deadline (the source is
made non-blocking and polled). Closing the pipe early makes the kernel's
next write fail, which ends the dump and lets the process go.

In the same pass the stack-only core (``collector.stackcore``) goes into
``stack.zst``: once the notes are read its pieces are planned, then copied as
they stream past. A crash that keeps only it is read until its last piece
(the stacks are at the end); one over ``max_core_size`` likewise.

A full core cut short (by the budget, or at ``max_core_size`` with no stack
core to read on for) is kept when the part read holds its notes
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
from collector.corehead import NotACore, notes_end, signal_sender
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
    dropped: str | None = None  # why core.zst was removed (or never written)
    stopped: str | None = None  # why reading stopped before the end of the core
    stack_size: int | None = None  # the stack core's size (uncompressed), None when not kept
    stack_compressed: int | None = None  # size of stack.zst
    stack_missing: str | None = None  # why there is no stack.zst
    sender: tuple[int, int] | None = None  # (pid, uid) of the process that sent the signal (corehead)
    sender_comm: str | None = None  # its name, as name_sender found it

    @property
    def kind(self) -> str:
        """The core kept: ``full`` (core.zst), ``stack`` (stack.zst only) or ``none``."""
        if self.compressed is not None:
            return "full"
        return "stack" if self.stack_compressed is not None else "none"


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

    def __init__(self, bundle_fd: int, policy: CapturePolicy, name: str = Bundle.CORE):
        import zstandard

        self.bundle_fd, self.name = bundle_fd, name
        self.fd = create_file(bundle_fd, name)
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
            os.unlink(self.name, dir_fd=self.bundle_fd)
        except OSError as exc:
            problems.append(f"could not remove the partial {self.name}: {exc.strerror}")


class _Head:
    """The first bytes of the core, until they tell where its notes end, and
    then until they hold them: the signal's sender is read from them, and
    named by ``name_sender`` at once, while the kernel still holds the
    crashed process (a supervisor that waits for it is still there)."""

    def __init__(self, name_sender=None) -> None:
        self.buf: bytearray | None = bytearray()
        self.needed: int | None = None  # bytes a partial core must hold; None: not known (yet)
        self.sender: tuple[int, int] | None = None  # (pid, uid) of a process that sent the signal
        self.sender_comm: str | None = None
        self.name_sender = name_sender

    def feed(self, data) -> None:
        self.buf += data
        if self.needed is None:
            try:
                self.needed = notes_end(self.buf)
            except NotACore:
                self.buf = None  # never of use cut short
                return
        if self.needed is not None and len(self.buf) >= self.needed:
            self.sender = signal_sender(bytes(self.buf[:self.needed]))
            self.buf = None
            if self.sender is not None and self.name_sender is not None:
                self.sender_comm = self.name_sender(*self.sender)
        elif len(self.buf) >= HEAD_MAX:
            self.buf = None

    def holds_notes(self, size: int) -> bool:
        return self.needed is not None and size >= self.needed


class _Stack:
    """The stack core (``collector.stackcore``), written while the full core
    streams past: the first bytes are kept until the notes are complete, then
    planned, then only the planned pieces are copied."""

    def __init__(self, bundle_fd: int, policy: CapturePolicy, mem_fd: int | None):
        self.bundle_fd, self.policy, self.mem_fd = bundle_fd, policy, mem_fd
        self.buf: bytearray | None = bytearray()
        self.file: _CoreFile | None = None
        self.writer = None  # a StackWriter once planned
        self.missing: str | None = None  # why there is no stack core

    @property
    def complete(self) -> bool:
        return self.writer is not None and self.writer.complete

    @property
    def wanted(self) -> bool:
        """Whether reading on is of use to the stack core."""
        return self.missing is None and not self.complete

    def feed(self, offset: int, data) -> None:
        if self.writer is not None:
            if not self.writer.complete:
                self.writer.feed(offset, data)
            return
        if self.buf is None:
            return
        self.buf += data
        try:
            end = notes_end(self.buf)
        except NotACore as exc:
            self.buf, self.missing = None, f"not a core: {exc}"
            return
        if end is None or len(self.buf) < end:
            if len(self.buf) >= HEAD_MAX:
                self.buf, self.missing = None, f"the notes end past {HEAD_MAX} bytes"
            return
        from collector.stackcore import StackWriter, plan

        buf, self.buf = self.buf, None
        try:
            stack_plan = plan(bytes(buf[:end]), self.policy.stack_globals_max,
                              read=self._read if self.mem_fd is not None else None)
        except NotACore as exc:
            self.missing = str(exc)
            return
        except Exception as exc:  # a bug in the plan costs the stack core, never the full one
            self.missing = f"stack core plan failed: {type(exc).__name__}: {exc}"[:300]
            return
        self.file = _CoreFile(self.bundle_fd, self.policy, Bundle.STACK)
        self.writer = StackWriter(stack_plan, self.file.writer)
        self.writer.feed(0, buf)

    def _read(self, addr: int, size: int) -> bytes | None:
        """The crashed process's memory, which the kernel keeps while it dumps it."""
        try:
            return os.pread(self.mem_fd, size, addr)
        except (OSError, OverflowError):
            return None

    def finish(self, problems: list[str]) -> tuple[int | None, int | None]:
        """(uncompressed size, compressed size), or Nones when not kept."""
        if self.file is None:
            if self.missing is None:
                self.missing = "the core ended before its notes"
            return None, None
        if not self.writer.complete:
            self.missing = "reading stopped before every stack was read"
            self.file.discard(problems)
            return None, None
        try:
            return self.writer.plan.size, self.file.finish()
        except OSError as exc:
            self.missing = f"writing the stack core failed: {exc.strerror}"
            self.file.discard(problems)
            return None, None

    def discard(self, problems: list[str], why: str) -> None:
        self.missing = self.missing or why
        if self.file is not None:
            self.file.discard(problems)
            self.file = None


def stream_core(src_fd: int, bundle_fd: int, policy: CapturePolicy, deadline: float,
                problems: list[str], full: bool = True, stack: bool = True, mem_fd: int | None = None,
                name_sender=None) -> Streamed:
    """Compress ``src_fd`` into ``core.zst`` (``full``) and its stack core
    into ``stack.zst`` (``stack``) until its end, ``max_core_size`` or
    ``deadline`` (``time.monotonic()``); release it in every case.

    Past ``max_core_size`` reading goes on for the stack core alone (the
    stacks are at the top of the address space, so at the end of the core):
    once it is complete the partial full core is dropped; if the budget ends
    first, the partial full core is kept as before. Without ``full``
    reading stops as soon as the stack core is complete. ``mem_fd``: the
    crashed process's ``/proc/PID/mem``, where the stack core's plan follows
    the dynamic linker's list of libraries (``collector.stackcore``).
    ``name_sender(pid, uid)``: the name of the process that sent the fatal
    signal, asked once the notes are read (``Streamed.sender_comm``)."""
    limit = policy.max_core_size
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    core: _CoreFile | None = None
    head = _Head(name_sender)
    stacker = _Stack(bundle_fd, policy, mem_fd) if stack else None
    size, dropped, stopped, next_check = 0, None, None, FREE_CHECK_EVERY
    over = False  # past max_core_size: reading on for the stack core only
    poller = select.poll()
    poller.register(src_fd, select.POLLIN)
    if not _nonblocking(src_fd):
        problems.append("the core's source could not be made non-blocking: the budget is checked between reads")
    try:
        if full:
            core = _CoreFile(bundle_fd, policy)
        else:
            dropped = "not kept"
        while True:
            # one byte past the limit tells a bigger core from one of exactly max_core_size
            want = CHUNK if over or core is None else min(CHUNK, limit + 1 - size)
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
            offset = size
            size += n
            if core is not None and not over:
                keep = n - max(0, size - limit)
                if keep:
                    core.writer.write(view[:keep])
            if head.buf is not None:
                head.feed(view[:n])
            if stacker is not None and stacker.wanted:
                stacker.feed(offset, view[:n])
            if core is not None and not over and size > limit:
                stopped = f"max_core_size reached ({limit} bytes)"
                if stacker is None or not stacker.wanted:
                    break
                over = True  # on for the stack core
            if (core is None or over) and (stacker is None or not stacker.wanted):
                break  # nothing more to keep: release the process now
            if size >= next_check:
                next_check += FREE_CHECK_EVERY
                free = free_space(bundle_fd)
                reason = low_space(free, policy)
                if reason and core is not None and not over and stacker is not None \
                        and stacker.missing is None and free >= policy.stack_min_free_space:
                    core.discard(problems)  # the full core goes, the stack core is still within its floor
                    core, dropped = None, reason
                elif reason and (core is not None or free < policy.stack_min_free_space):
                    dropped = stopped = reason if core is not None else low_space(free, policy, stack=True)
                    break
            if time.monotonic() > deadline:
                stopped = f"wall-clock budget spent (max_core_seconds = {policy.max_core_seconds:g})"
                break
    except OSError as exc:
        dropped = stopped = f"writing the core failed: {exc.strerror}"
    finally:
        release(src_fd)
    if core is None and stopped is None and stacker is not None and stacker.complete and dropped:
        stopped = "the stack core was complete"
    kept = min(size, limit)
    if core is not None and stopped and not dropped and not head.holds_notes(kept):
        dropped = f"{stopped}, before the core's notes were complete ({kept} bytes read)"
    stack_size = stack_compressed = None
    if stacker is not None:
        if stopped and stopped.startswith(("low disk space", "writing the core failed")) and not stacker.complete:
            stacker.discard(problems, stopped)
        else:
            stack_size, stack_compressed = stacker.finish(problems)
    if over and stack_compressed is not None and not dropped:
        dropped = f"over max_core_size ({limit} bytes): the stack core is kept"
    compressed = None
    if core is not None and not dropped:
        try:
            compressed = core.finish()
        except OSError as exc:
            dropped = f"writing the core failed: {exc.strerror}"
    if core is not None and dropped:
        core.discard(problems)
    return Streamed(size=size, compressed=compressed, dropped=None if dropped == "not kept" else dropped,
                    stopped=stopped, stack_size=stack_size, stack_compressed=stack_compressed,
                    stack_missing=None if stacker is None else stacker.missing, sender=head.sender,
                    sender_comm=head.sender_comm)
