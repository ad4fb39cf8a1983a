"""collector/corestream.py on a real pipe: a core read to its end, cut at
max_core_size, cut by the wall-clock budget while the writer stalls; the
pipe is released in every case (the writer sees EPIPE, never hangs)."""

import os
import select
import threading
import time
from pathlib import Path

import pytest
import zstandard

from collector.corehead import notes_end
from collector.corestream import stream_core
from collector.policy import CapturePolicy

SAMPLE = Path(__file__).resolve().parents[2] / "sample-cores" / "bundles" / "musl-memcpy" / "core.zst"


@pytest.fixture(scope="module")
def core() -> bytes:
    with open(SAMPLE, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


class Writer(threading.Thread):
    """Writes ``data`` into a pipe, then stalls ``stall`` seconds before closing."""

    def __init__(self, data: bytes, stall: float = 0.0):
        super().__init__(daemon=True)
        self.read_fd, self.write_fd = os.pipe()
        self.data, self.stall, self.broken = data, stall, False

    def run(self):
        try:
            view = memoryview(self.data)
            while view:
                view = view[os.write(self.write_fd, view[:65536]):]
            poller = select.poll()  # POLLERR on the write end: no reader left
            poller.register(self.write_fd, 0)
            self.broken = bool(poller.poll(self.stall * 1000)) if self.stall else False
        except BrokenPipeError:
            self.broken = True
        finally:
            os.close(self.write_fd)


def stream(writer: Writer, tmp_path: Path, deadline: float = 30.0, full: bool = True, stack: bool = True,
           **policy):
    bundle_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    writer.start()
    problems: list[str] = []
    start = time.monotonic()
    try:
        result = stream_core(writer.read_fd, bundle_fd, CapturePolicy(**policy), start + deadline, problems,
                             full=full, stack=stack)
    finally:
        os.close(bundle_fd)
    took = time.monotonic() - start
    assert os.readlink(f"/proc/self/fd/{writer.read_fd}") == "/dev/null"  # the pipe is closed
    os.close(writer.read_fd)
    return result, took, problems


def kept(tmp_path: Path, name: str = "core.zst") -> bytes:
    with open(tmp_path / name, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def test_whole_core(core, tmp_path):
    result, _, problems = stream(Writer(core), tmp_path)
    assert (result.size, result.stopped, result.dropped) == (len(core), None, None) and not problems
    assert kept(tmp_path) == core and result.compressed == (tmp_path / "core.zst").stat().st_size


def test_exactly_max_core_size_is_whole(core, tmp_path):
    result, _, _ = stream(Writer(core), tmp_path, max_core_size=len(core))
    assert result.stopped is None and kept(tmp_path) == core


def test_cut_at_max_core_size_keeps_the_notes(core, tmp_path):
    limit = notes_end(core) + 10000
    writer = Writer(core * 20)  # far more than the pipe holds: the writer must be let go
    result, _, _ = stream(writer, tmp_path, max_core_size=limit, stack=False)
    writer.join(10)
    assert not writer.is_alive() and writer.broken
    assert result.stopped == f"max_core_size reached ({limit} bytes)" and result.dropped is None
    assert kept(tmp_path) == core[:limit] and limit < result.size <= limit + (1 << 20)


def stack_core_of(core: bytes) -> bytes:
    import io

    from collector.stackcore import StackWriter, plan

    out = io.BytesIO()
    StackWriter(plan(core[:notes_end(core)]), out).feed(0, core)
    return out.getvalue()


def test_whole_core_has_its_stack_core_beside(core, tmp_path):
    result, _, problems = stream(Writer(core), tmp_path)
    assert result.kind == "full" and kept(tmp_path) == core and not problems
    stack = kept(tmp_path, "stack.zst")
    assert stack == stack_core_of(core) and result.stack_size == len(stack) < len(core) // 4
    assert result.stack_compressed == (tmp_path / "stack.zst").stat().st_size


def test_over_max_core_size_keeps_the_stack_core(core, tmp_path):
    limit = notes_end(core) + 10000
    writer = Writer(core * 20)
    result, _, _ = stream(writer, tmp_path, max_core_size=limit)
    writer.join(10)
    assert not writer.is_alive() and writer.broken  # released once the stacks were read
    assert result.kind == "stack" and not (tmp_path / "core.zst").exists()
    assert result.dropped == f"over max_core_size ({limit} bytes): the stack core is kept"
    assert kept(tmp_path, "stack.zst") == stack_core_of(core)
    assert result.size < 2 * len(core)  # no further than the stacks


def test_stack_only_reads_to_the_last_stack(core, tmp_path):
    writer = Writer(core * 20)
    result, _, _ = stream(writer, tmp_path, full=False)
    writer.join(10)
    assert writer.broken and result.kind == "stack" and result.dropped is None
    assert result.stopped == "the stack core was complete" and result.size < 2 * len(core)
    assert not (tmp_path / "core.zst").exists() and kept(tmp_path, "stack.zst") == stack_core_of(core)


def test_stack_core_cut_short_is_not_kept(core, tmp_path):
    writer = Writer(core[:len(core) - 4096], stall=60)
    result, _, _ = stream(writer, tmp_path, deadline=0.5, full=False)
    assert result.kind == "none" and result.stack_missing == "reading stopped before every stack was read"
    assert not (tmp_path / "stack.zst").exists()


def test_budget_stops_a_stalled_writer(core, tmp_path):
    writer = Writer(core[:notes_end(core) + 5000], stall=60)
    result, took, _ = stream(writer, tmp_path, deadline=0.5)
    assert 0.5 <= took < 3, took
    assert result.stopped == "wall-clock budget spent (max_core_seconds = 60)" and result.dropped is None
    assert kept(tmp_path) == core[:notes_end(core) + 5000]
    writer.join(10)
    assert not writer.is_alive() and writer.broken  # released long before its 60 s


def test_cut_before_the_notes_is_dropped(core, tmp_path):
    writer = Writer(core[:100], stall=60)
    result, took, _ = stream(writer, tmp_path, deadline=0.3)
    assert took < 3 and result.size == 100
    assert result.dropped == ("wall-clock budget spent (max_core_seconds = 60), before the core's notes were "
                              "complete (100 bytes read)")
    assert not (tmp_path / "core.zst").exists()
    writer.join(10)
    assert writer.broken


def test_not_a_core_cut_short_is_dropped(tmp_path):
    result, _, _ = stream(Writer(os.urandom(300000)), tmp_path, max_core_size=100000)
    assert result.dropped.startswith("max_core_size reached (100000 bytes), before the core's notes")
    assert not (tmp_path / "core.zst").exists()


def test_low_space_drops_the_full_core_and_keeps_the_stack_core(core, tmp_path):
    data = core * (8 + (64 << 20) // len(core))  # past the first free-space check
    result, _, problems = stream(Writer(data), tmp_path, min_free_space=1 << 60, stack_min_free_space=1)
    assert result.size < len(data) and result.stopped == "the stack core was complete"
    assert result.kind == "stack" and result.dropped.startswith("low disk space")
    assert not (tmp_path / "core.zst").exists() and kept(tmp_path, "stack.zst") == stack_core_of(core)
    assert not problems

