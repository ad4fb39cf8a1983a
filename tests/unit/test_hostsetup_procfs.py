"""collector/hostsetup/procfs.py: the signals a process catches."""

from collector.hostsetup.procfs import caught_signals


def test_sigcgt_mask():
    assert caught_signals("0000000000010000") == {17}  # bash as PID 1: SIGCHLD only
    assert caught_signals("0000000000014000") == {15, 17}  # with `trap ... TERM`
