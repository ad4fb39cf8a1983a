"""webui/throttle.py: when a login must wait, and how long."""

from webui.throttle import wait_seconds

LIMITS = {"user": 5, "addr": 20}


def test_under_the_limits_no_wait():
    assert wait_seconds({}, LIMITS, 1000.0, 900) == 0
    assert wait_seconds({"user": (4, 990.0), "addr": (19, 100.0)}, LIMITS, 1000.0, 900) == 0


def test_at_a_limit_wait_until_its_window_passes():
    assert wait_seconds({"user": (5, 990.0)}, LIMITS, 1000.0, 900) == 890
    assert wait_seconds({"addr": (25, 400.5)}, LIMITS, 1000.0, 900) == 301  # rounded up: never 0 too early
    assert wait_seconds({"user": (5, 990.0), "addr": (20, 200.0)}, LIMITS, 1000.0, 900) == 890  # the longer


def test_a_passed_window_no_longer_counts():
    assert wait_seconds({"user": (50, 100.0)}, LIMITS, 1000.0, 900) == 0
    assert wait_seconds({"user": (50, 100.0)}, LIMITS, 999.9, 900) == 1
