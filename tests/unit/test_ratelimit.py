"""collector/ratelimit.py: the decision, its key and its state file."""

import os

from collector import ratelimit


def test_rate_limit_decision():
    state: dict = {}
    kept = []
    for i in range(5):
        dropped, state = ratelimit.decide(state, "k", 1000.0 + i, limit=3, host_limit=100, window=60)
        kept.append(dropped is None)
    assert kept == [True, True, True, False, False]
    dropped, state = ratelimit.decide(state, "k", 1005.0, limit=3, host_limit=100, window=60)
    assert dropped == "rate limit: 3 cores of this build per 60 s"
    dropped, state = ratelimit.decide(state, "other", 1005.0, limit=3, host_limit=100, window=60)
    assert dropped is None  # per build
    dropped, state = ratelimit.decide(state, "k", 1061.0, limit=3, host_limit=100, window=60)
    assert dropped is None  # the first one left the window
    assert ratelimit.decide({}, "k", 1.0, limit=0, host_limit=9, window=60)[0]  # 0: no cores at all
    dropped, _ = ratelimit.decide({"k": "junk", 3: [1]}, "k", 5.0, limit=1, host_limit=9, window=60)  # corrupt
    assert dropped is None


def test_host_wide_cap_over_all_builds():
    state: dict = {}
    results = []
    for i in range(6):
        dropped, state = ratelimit.decide(state, f"build{i}", 100.0 + i, limit=10, host_limit=4, window=60)
        results.append(dropped)
    assert results[:4] == [None] * 4
    assert results[4] == results[5] == "rate limit: 4 cores on this host per 60 s (host_rate_limit)"
    assert len(state[ratelimit.HOST]) == 4  # only kept cores count
    dropped, state = ratelimit.decide(state, "build9", 161.0, limit=10, host_limit=4, window=60)
    assert dropped is None  # the oldest left the window
    assert ratelimit.decide({}, "k", 1.0, limit=5, host_limit=0, window=60)[0]


def test_state_stays_bounded_and_keeps_the_host_count():
    state: dict = {}
    for i in range(ratelimit.MAX_KEYS + 50):
        _, state = ratelimit.decide(state, f"b{i}", 1000.0 + i / 1000, limit=1, host_limit=10 ** 6, window=60)
    assert len(state) == ratelimit.MAX_KEYS and len(state[ratelimit.HOST]) == ratelimit.MAX_KEYS + 50
    assert f"b{ratelimit.MAX_KEYS + 49}" in state and "b0" not in state


def test_key_is_the_build_the_container_and_the_user():
    k = ratelimit.key_for("build-id:abc", None, 1000)
    assert k == ratelimit.key_for("build-id:abc", None, 1000) and len(k) == 24
    assert len({k, ratelimit.key_for("build-id:abd", None, 1000), ratelimit.key_for("build-id:abc", "c" * 64, 1000),
                ratelimit.key_for("build-id:abc", None, 0)}) == 4


def test_rate_limit_state_file(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        results = [ratelimit.check(fd, "x", 2, 100, 60, now=100.0 + i)[0] for i in range(3)]
        assert results[:2] == [None, None] and results[2].startswith("rate limit")
        assert ratelimit.check(fd, "y", 2, 100, 60, now=103.0) == (None, None)
        assert ratelimit.check(fd, "z", 2, 3, 60, now=103.5)[0].endswith("(host_rate_limit)")
        (tmp_path / ratelimit.STATE).write_text("{garbage")
        assert ratelimit.check(fd, "x", 2, 100, 60, now=104.0) == \
            (None, "rate limit state was corrupt and was reset")
        assert oct((tmp_path / ratelimit.STATE).stat().st_mode & 0o777) == "0o600"
    finally:
        os.close(fd)


def test_stack_cores_counted_apart():
    from collector.ratelimit import HOST, decide

    state = {}
    why, state = decide(state, "k", 100.0, 1, 10, 60)
    assert why is None
    why, state = decide(state, "stack:k", 100.0, 2, 2, 60, host="stack:host")
    assert why is None and state[HOST] == [100.0] and state["stack:host"] == [100.0]
    why, state = decide(state, "stack:k", 101.0, 2, 2, 60, host="stack:host")
    assert why is None
    why, _ = decide(state, "stack:k", 102.0, 2, 2, 60, host="stack:host")
    assert why == "rate limit: 2 cores of this build per 60 s"
    assert decide(state, "other", 102.0, 1, 10, 60)[0] is None  # the full-core count is its own
