"""A hostile core against the root handler: the core's bytes are the input
an attacker controls most, so by the time the handler reads the first of
them it holds no capability and cannot regain one (``collector.privileges``).
The handler ``host-setup install`` put in place is run by hand, exactly as
core_pattern says the kernel runs it, with a core we feed slowly so that its
/proc status can be read while it waits for the core."""

import os
import subprocess
import time

from collector.spool import read_meta
import pytest

from handlerkit import bundle_of, core_bytes, installed_argv
from waiting import wait_for


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def test_the_handler_reads_the_core_without_capabilities(collector_installed, sleeper):
    data = collector_installed
    pid = sleeper.pid
    values = {"%P": str(pid), "%i": str(pid), "%I": str(pid), "%s": "11", "%t": str(int(time.time())),
              "%u": "0", "%g": "0", "%d": "1", "%F": "", "%E": "!usr!bin!sleep", "%e": "sleep"}
    handler = subprocess.Popen(installed_argv(values), stdin=subprocess.PIPE, cwd="/", env={},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    core = b"\x7fELF" + os.urandom(1 << 20)
    try:
        handler.stdin.write(core[:4096])
        handler.stdin.flush()
        # it has read /proc/PID and now waits for the rest of the core
        before = status(handler.pid)
        assert before["Uid"].split()[0] == "0"
        confined = wait_for(lambda: (s := status(handler.pid))["CapEff"] == "0" * 16 and s,
                            timeout=20, what="the handler to give up its capabilities")
        for field in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
            assert int(confined[field], 16) == 0, (field, confined[field])
        assert confined["NoNewPrivs"] == "1"
        assert confined["Uid"].split() == ["0"] * 4  # still root: the bundle it writes stays root's
        handler.stdin.write(core[4096:])
        handler.stdin.close()
        assert handler.wait(timeout=30) == 0
    finally:
        if handler.poll() is None:
            handler.kill()
            handler.wait()
    assert handler.stdout.read() == b"" and handler.stderr.read() == b""
    meta = read_meta(bundle_of(data / "spool", pid))
    assert core_bytes(data / "spool" / meta.id / "core.zst") == core  # and it still kept all of it
    assert not [p for p in meta.problems if "capabilities" in p], meta.problems
