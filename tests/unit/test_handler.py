"""collector/handler.py without the kernel: the arguments core_pattern gives
it (tests/system/test_handler.py runs it under the real kernel)."""

import pytest

from collector.capture import inferred_dump_mode
from collector.handler import Usage, parse_args


def test_handler_arguments():
    a = parse_args(["-d", "/data", "--spool=/sp", "123", "7", "456", "11", "1795619035", "1000", "100", "1",
                    "3", "!usr!bin!x", "my", "prog"])
    assert (a.pid, a.tid, a.host_tid, a.signal, a.crash_time, a.uid, a.gid, a.dump_mode, a.pidfd) == \
        (123, 7, 456, 11, 1795619035, 1000, 100, 1, 3)
    assert a.data_dir == "/data" and a.spool == "/sp" and a.exe_bang == "!usr!bin!x" and a.comm == "my prog"
    # %F on a kernel without it: empty; a comm that looks like an option is a comm
    a = parse_args(["1", "1", "1", "6", "2", "0", "0", "2", "", "!x", "-s"])
    assert a.pidfd is None and a.comm == "-s" and a.spool is None
    for bad in ([], ["1", "2"], ["x", "1", "1", "6", "2", "0", "0", "1", "", "!x", "c"],
                ["--spool", "relative", "1", "1", "1", "6", "2", "0", "0", "1", "", "!x", "c"],
                ["--bogus", "1", "1", "1", "6", "2", "0", "0", "1", "", "!x", "c"]):
        with pytest.raises(Usage):
            parse_args(bad)


def test_dump_mode_without_the_kernel():
    """Socket mode has no %d: set-uid ids, or a /proc/PID that the kernel
    gave to root while the process runs as someone else, mean mode 2."""
    plain = {"Uid": "1000\t1000\t1000\t1000", "Gid": "100\t100\t100\t100"}
    assert inferred_dump_mode(plain, 1000) == 1
    assert inferred_dump_mode(plain, 0) == 2  # prctl(PR_SET_DUMPABLE, 0), or ids changed and back
    assert inferred_dump_mode({**plain, "Uid": "65534\t0\t0\t0"}, 0) == 2  # set-uid root
    assert inferred_dump_mode({**plain, "Gid": "100\t42\t42\t42"}, 1000) == 2  # set-gid
    assert inferred_dump_mode({"Uid": "0\t0\t0\t0", "Gid": "0\t0\t0\t0"}, 0) == 1  # root's own
    assert inferred_dump_mode({}, 0) is None
