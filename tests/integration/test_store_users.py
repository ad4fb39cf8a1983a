"""The store's users, API tokens, web sessions and login failures, on SQLite."""

import time

import pytest

from coretriage.store import NotFound


def test_changing_a_user_ends_its_sessions_and_keeps_its_tokens(store):
    assert store.add_user("ann", "h1", "viewer") is True
    store.add_user("bob", "h2", "viewer")
    store.add_token("ann", "a" * 64)
    now = time.time()
    for n, user in enumerate(("ann", "ann", "bob")):
        store.add_session(f"{n}" * 64, user, f"csrf{n}", now)
    assert store.add_user("ann", "h3", "admin") is False  # the same user, changed in place
    assert store.user_record("ann")[0].role == "admin" and store.user_record("ann")[1] == "h3"
    assert store.web_session("0" * 64) is None and store.web_session("1" * 64) is None
    assert store.web_session("2" * 64).user == "bob"
    assert store.user_for_token("a" * 64).name == "ann"
    assert store.end_sessions("bob") == 1


def test_sessions(store):
    store.add_user("ann", "h", "viewer")
    store.add_session("f" * 64, "ann", "tok", 1000.0)
    s = store.web_session("f" * 64)
    assert (s.user, s.csrf, s.created, s.last_seen, s.data) == ("ann", "tok", 1000.0, 1000.0, {})
    store.touch_session("f" * 64, 1500.0, {"_flashes": [["message", "hi"]]})
    assert store.web_session("f" * 64).data == {"_flashes": [["message", "hi"]]}
    store.end_stale_sessions(idle_since=1400.0, created_before=0.0)
    assert store.web_session("f" * 64) is not None
    store.end_stale_sessions(idle_since=1600.0, created_before=0.0)
    assert store.web_session("f" * 64) is None


def test_tokens_expire_and_are_revoked(store):
    store.add_user("ann", "h", "viewer")
    now = time.time()
    store.add_token("ann", "1" * 64, expires=now + 100)
    store.add_token("ann", "2" * 64, expires=now - 1)
    store.add_token("ann", "3" * 64)  # the default life
    assert store.user_for_token("1" * 64).name == "ann"
    assert store.user_for_token("2" * 64) is None  # expired
    assert store.user_for_token("1" * 64, now=now + 101) is None
    listed = {t.id: t for t in store.tokens()}
    assert set(listed) == {"1" * 12, "2" * 12, "3" * 12}
    assert listed["1" * 12].last_used is not None and listed["3" * 12].last_used is None
    assert listed["3" * 12].expires - listed["3" * 12].created == pytest.approx(90 * 86400)
    assert store.revoke_token("111111111111").user == "ann"
    assert store.user_for_token("1" * 64) is None and len(store.tokens("ann")) == 2
    with pytest.raises(NotFound, match="no token"):
        store.revoke_token("111111111111")
    with pytest.raises(NotFound, match="not a token id"):
        store.revoke_token("1%")


def test_login_failures_count_in_a_window(store):
    store.add_login_failure(["u", "a"], 1000.0, 900)
    store.add_login_failure(["u", "a"], 1010.0, 900)
    store.add_login_failure(["a"], 1020.0, 900)
    assert store.login_failures(["u", "a", "x"]) == {"u": (2, 1000.0), "a": (3, 1000.0)}
    store.clear_login_failures("u")
    assert store.login_failures(["u", "a"]) == {"a": (3, 1000.0)}
    store.add_login_failure(["a"], 2000.0, 900)  # the old window has passed: counting starts again
    assert store.login_failures(["a"]) == {"a": (1, 2000.0)}
