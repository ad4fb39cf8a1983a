"""Where a signal came from (issue 11, part 6): a signal another process
sent names its sender and shows no fault address; a crash whose own handler
re-raised the signal reports the fault the kernel handed that handler."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coretriage.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sample-cores"))
import crashkit  # noqa: E402


def cli(capsys, data, *argv):
    code = main(["--data-dir", str(data), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_reraised_fault_is_the_one_the_handler_was_handed(analyzed):
    _, a, sig = analyzed("reraise")
    # the process ended on its own kill(getpid(), SIGSEGV) ...
    assert a.signal.reraised is not None
    assert a.signal.reraised.code_name == "SI_USER" and a.signal.reraised.sender_is_self
    assert a.signal.reraised.sender_pid == a.pid and a.signal.reraised.fault_address is None
    # ... but the crash is the NULL read the kernel reported to the handler
    assert a.signal.name == "SIGSEGV" and a.signal.code_name == "SEGV_MAPERR"
    assert a.signal.fault_address is not None and a.signal.fault_address < 0x100
    assert a.signal.describe().startswith(f"SIGSEGV (SEGV_MAPERR) at {a.signal.fault_address:#x}; re-raised")
    assert sig.text == "lookup_key | main"


def _send(how: str, pid: int) -> int:
    """SIGSEGV to ``pid`` by kill(2), tgkill(2) or sigqueue(3); the sender's pid."""
    if how == "kill":
        os.kill(pid, signal.SIGSEGV)
        return os.getpid()
    if how == "tgkill":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(234, pid, pid, signal.SIGSEGV) == 0, os.strerror(ctypes.get_errno())  # SYS_tgkill
        return os.getpid()
    sender = subprocess.Popen(["/usr/bin/kill", "--queue", "7", "-s", "SEGV", str(pid)])  # util-linux: sigqueue
    assert sender.wait(timeout=30) == 0
    return sender.pid


@pytest.mark.parametrize("how, code", [("kill", "SI_USER"), ("tgkill", "SI_TKILL"), ("sigqueue", "SI_QUEUE")])
def test_a_signal_sent_by_another_process_names_the_sender(tmp_path, samples, capsys, how, code):
    exe = samples("reraise").exe  # its "wait" mode installs no handler
    cores = tmp_path / "cores"
    with crashkit.cores_into(cores):
        proc = subprocess.Popen([str(exe), "wait"], preexec_fn=crashkit.allow_cores)
        try:
            time.sleep(0.1)
            sender = _send(how, proc.pid)
            assert proc.wait(timeout=30) == -signal.SIGSEGV
        finally:
            proc.kill()
        core = crashkit.wait_for_core(cores, proc.pid)
    got = json.loads(cli(capsys, tmp_path / "data", "ingest", str(core), "--exe", str(exe), "--json"))
    shown = json.loads(cli(capsys, tmp_path / "data", "show", got["crash_id"], "--json"))["analysis"]["signal"]
    assert shown["code_name"] == code and shown["fault_address"] is None
    assert shown["sender_pid"] == sender and shown["sender_uid"] == os.getuid()
    assert not shown["sender_is_self"]
    text = cli(capsys, tmp_path / "data", "export", got["crash_id"], "--format", "text")
    line = next(l for l in text.splitlines() if l.startswith("Signal"))
    assert f"SIGSEGV ({code}) sent by pid {sender} (uid {os.getuid()})" in line
    assert " at 0x" not in line


def test_key_frames_skip_the_crash_handler_as_the_signature_does(analyzed):
    _, a, sig = analyzed("reraise")
    frames = a.crashing_thread.frames
    names = [frames[i].function for i in sig.key_frames]
    assert "on_crash" not in names and names[0] == sig.frames[0] == "lookup_key"


def test_a_handler_that_crashes_in_turn_reports_the_first_fault(samples, tmp_path):
    from analyzer.analyze import analyze_core

    exe = samples("reraise").exe
    core = crashkit.crash([str(exe), "nested"], tmp_path / "cores", expect_signal=signal.SIGSEGV)
    a = analyze_core(core, exe)
    assert a.signal.code_name == "SEGV_MAPERR" and a.signal.fault_address < 0x100  # lookup_key's NULL read
    assert a.signal.reraised.fault_address == 0x20 and a.signal.reraised.sender_pid is None
    assert "; the program's handler then crashed: SIGSEGV (SEGV_MAPERR) at 0x20" in a.signal.describe()
