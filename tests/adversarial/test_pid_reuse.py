"""Pid reuse: by the time the handler looks at /proc/PID, the pid may name
another process (the crashed one died, the pid was handed out again), whose
command line and environment (secrets included) must not be filed as the
crash's. The handler ``host-setup install`` put in place is run here by
hand, exactly as core_pattern says the kernel runs it, with the pid of a
live process that is not dumping core: the core is kept, the /proc details
are discarded and the reason recorded. With a kernel pidfd (%F) that names
another process, the pidfd is not believed either."""

import os
import subprocess
import time

import pytest

from collector.spool import read_meta
from handlerkit import bundle_of, core_bytes, installed_argv

SECRET = "SECRET_THING=hunter2-not-yours"


@pytest.fixture
def impostor():
    """A live process that is not dumping core, with a secret in its environment."""
    p = subprocess.Popen(["sleep", "60"], env=dict([SECRET.split("=", 1)]))
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def run_handler(pid: int, pidfd: str = "", pass_fds=()) -> tuple[subprocess.CompletedProcess, bytes]:
    values = {"%P": str(pid), "%i": str(pid), "%I": str(pid), "%s": "11", "%t": str(int(time.time())),
              "%u": "0", "%g": "0", "%d": "1", "%F": pidfd, "%E": "!usr!bin!sleep", "%e": "sleep"}
    fake_core = b"\x7fELF" + os.urandom(3 << 20)
    done = subprocess.run(installed_argv(values), input=fake_core, cwd="/", env={}, capture_output=True,
                          timeout=30, pass_fds=pass_fds)
    return done, fake_core


def check_discarded(data, pid, done, fake_core):
    assert done.returncode == 0 and done.stdout == b"" and done.stderr == b""
    meta = read_meta(bundle_of(data / "spool", pid))
    assert any("details discarded: the process at this pid is not dumping core" in p for p in meta.problems), \
        meta.problems
    assert meta.environ == {} and meta.cmdline == () and SECRET.split("=")[1] not in meta.to_json()
    assert core_bytes(data / "spool" / meta.id / "core.zst") == fake_core  # the core itself is kept
    return meta


def test_a_live_process_at_the_pid_is_not_taken_for_the_crashed_one(collector_installed, impostor):
    done, fake_core = run_handler(impostor.pid, pidfd="0")  # fd 0 is the pipe, not a pidfd
    meta = check_discarded(collector_installed, impostor.pid, done, fake_core)
    assert any("%F: fd 0 is not a pidfd" in p for p in meta.problems), meta.problems


def test_a_pidfd_of_another_process_is_not_believed(collector_installed, impostor):
    """%F names the pidfd of a process that has exited: it vouches for nothing."""
    gone = subprocess.Popen(["true"])
    pidfd = os.pidfd_open(gone.pid)
    gone.wait()
    try:
        done, fake_core = run_handler(impostor.pid, pidfd=str(pidfd), pass_fds=(pidfd,))
    finally:
        os.close(pidfd)
    meta = check_discarded(collector_installed, impostor.pid, done, fake_core)
    assert any(f"%F: fd {pidfd} is not a pidfd for pid {impostor.pid}" in p for p in meta.problems), meta.problems
