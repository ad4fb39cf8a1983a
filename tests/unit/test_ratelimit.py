"""collector/ratelimit.py: the decision and its state file."""

import os

from collector import ratelimit


def test_rate_limit_decision():
    state: dict = {}
    kept = []
    for i in range(5):
        ok, state = ratelimit.decide(state, "k", 1000.0 + i, limit=3, window=60)
        kept.append(ok)
    assert kept == [True, True, True, False, False]
    ok, state = ratelimit.decide(state, "other", 1005.0, limit=3, window=60)
    assert ok  # per executable
    ok, state = ratelimit.decide(state, "k", 1061.0, limit=3, window=60)
    assert ok  # the first one left the window
    assert ratelimit.decide({}, "k", 1.0, limit=0, window=60)[0] is False  # 0: no cores at all
    ok, _ = ratelimit.decide({"k": "junk", 3: [1]}, "k", 5.0, limit=1, window=60)  # corrupt state
    assert ok


def test_rate_limit_state_file(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        results = [ratelimit.check(fd, "/usr/bin/x", 2, 60, now=100.0 + i)[0] for i in range(3)]
        assert results == [True, True, False]
        assert ratelimit.check(fd, "/usr/bin/y", 2, 60, now=103.0) == (True, None)
        (tmp_path / ratelimit.STATE).write_text("{garbage")
        assert ratelimit.check(fd, "/usr/bin/x", 2, 60, now=104.0) == \
            (True, "rate limit state was corrupt and was reset")
        assert oct((tmp_path / ratelimit.STATE).stat().st_mode & 0o777) == "0o600"
    finally:
        os.close(fd)
