"""coretriage/users.py: passwords, token and session ids, throttle keys."""

import time

from coretriage.users import check_login, hash_password, new_session_id, new_token, throttle_keys, token_hash, token_id


def test_unknown_user_costs_a_full_password_check():
    stored = hash_password("right-password")
    assert check_login(stored, "right-password") and not check_login(stored, "wrong")
    check_login(None, "warm")  # the dummy hash is made once
    start = time.perf_counter()
    assert not check_login(None, "right-password")
    unknown = time.perf_counter() - start
    start = time.perf_counter()
    check_login(stored, "wrong")
    wrong = time.perf_counter() - start
    assert unknown > wrong / 4  # the same work: a real check, not an early return (timing is only a sanity check)


def test_ids_and_keys():
    token = new_token()
    assert token.startswith("ct_") and len(token) > 40 and new_token() != token
    assert len(new_session_id()) >= 40 and new_session_id() != new_session_id()
    hashed = token_hash(token)
    assert len(hashed) == 64 and token_id(hashed) == hashed[:12] and token not in hashed
    user, addr = throttle_keys("ann", "10.0.0.1")
    assert user != addr and "ann" not in user and len(user) == len(addr) == 64
    assert throttle_keys("ann", "10.0.0.2")[0] == user and throttle_keys("bob", "10.0.0.1")[1] == addr
    assert throttle_keys("x" * 10_000, None)[0] == throttle_keys("x" * 256, None)[0]  # bounded work
