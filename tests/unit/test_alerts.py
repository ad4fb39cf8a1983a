"""coretriage.alerts: the pure decisions."""

import pytest

from coretriage.alerts import Channel, Seen, SpikePolicy, decide, dedup_key, parse_events, spiking

P = SpikePolicy(window=60, baseline=3600, factor=10, minimum=5)


def seen(**kw):
    base = dict(created=False, state_before="new", in_window=1, in_baseline=0, spike_open=False)
    return Seen(**{**base, **kw})


def test_new_only_for_the_crash_that_made_the_group():
    assert decide(seen(created=True), P) == ("new",)
    assert decide(seen(), P) == ()


def test_regression_only_from_resolved():
    assert decide(seen(state_before="resolved"), P) == ("regression",)
    assert decide(seen(state_before="regressed"), P) == ()
    assert decide(seen(state_before="acknowledged"), P) == ()


def test_ignored_raises_nothing():
    assert decide(seen(state_before="ignored", in_window=1000), P) == ()


def test_spike_needs_the_minimum_and_the_factor():
    assert not spiking(seen(in_window=4), P)
    assert spiking(seen(in_window=5), P)
    # 600 crashes in the hour before: 10 per minute on average, so 100 in a minute is a spike, 99 not
    assert not spiking(seen(in_window=99, in_baseline=600), P)
    assert spiking(seen(in_window=100, in_baseline=600), P)
    assert decide(seen(in_window=100, in_baseline=600, spike_open=True), P) == ()
    assert decide(seen(in_window=100, in_baseline=600, state_before="resolved"), P) == ("regression", "spike")


def test_dedup_keys():
    assert dedup_key("new", 5, "c1") == dedup_key("new", 5, "c2") == "new:g5"
    assert dedup_key("regression", 5, "c1") != dedup_key("regression", 5, "c2")


def test_channel_filters():
    ch = Channel("a", "webhook", "http://x/", events=("new", "spike"), executable="*/nginx", host="web*")
    assert ch.wants("new", "/usr/sbin/nginx", "web3", None)
    assert not ch.wants("regression", "/usr/sbin/nginx", "web3", None)
    assert not ch.wants("new", "/usr/bin/redis", "web3", None)
    assert not ch.wants("new", "/usr/sbin/nginx", "db1", None)
    assert not ch.wants("new", None, "web3", None)
    assert Channel("b", "email", "a@b").wants("spike", None, None, None)


def test_parse_events():
    assert parse_events("new, spike") == ("new", "spike")
    for bad in ("", "new,boom"):
        with pytest.raises(ValueError):
            parse_events(bad)


def test_new_after_reprocess():
    from coretriage.alerts import new_after_reprocess

    before = {1, 2, 3}
    moves = {"c1": (1, 1), "c2": (1, 7), "c3": (2, 8), "c4": (3, 8), "c5": (3, 9), "c6": (2, 2)}
    # 7 only holds crashes of alerted group 1; 8 holds one of unalerted 3 but also one of alerted 2;
    # 9 only of unalerted 3: the one group nobody heard of
    assert new_after_reprocess(moves, before, alerted={1, 2}) == {9: "c5"}
    assert new_after_reprocess(moves, before, alerted={1, 2, 3}) == {}
    assert new_after_reprocess(moves, before, alerted=set()) == {7: "c2", 8: "c3", 9: "c5"}
    assert new_after_reprocess({"c1": (1, 2)}, before, alerted=set()) == {}  # into a group that existed
