"""collector/corepattern.py's pattern_lock across processes: host-setup run by a test that holds the
lock must not wait for that very test (``lock_for_child``)."""

import subprocess
import sys

from collector.corepattern import lock_for_child, pattern_lock

TAKE = ("from collector.corepattern import pattern_lock\n"
        "with pattern_lock(timeout=1):\n"
        "    print('took it')\n")


def take_in_child(**kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TAKE], capture_output=True, text=True, timeout=60, **kwargs)


def test_a_child_given_the_lock_shares_it_and_others_wait():
    assert lock_for_child() == {}  # nothing held, nothing handed down
    with pattern_lock():
        with pattern_lock():  # reentrant in this thread
            pass
        shared = take_in_child(**lock_for_child())
        assert shared.returncode == 0 and "took it" in shared.stdout, shared.stderr
        stranger = take_in_child()
        assert stranger.returncode != 0 and "still held" in stranger.stderr
    assert lock_for_child() == {}
    after = take_in_child()  # the child did not release the parent's lock early, nor keep it
    assert after.returncode == 0, after.stderr
