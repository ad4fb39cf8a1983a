"""collector/hostsetup/clock.py: is the clock synchronised (timedatectl, adjtimex)."""

from collector.hostsetup.clock import STA_UNSYNC, TIME_ERROR, from_adjtimex, parse_timedatectl


def test_clock_parsing():
    assert parse_timedatectl("NTPSynchronized=yes\n") is True
    assert parse_timedatectl("NTPSynchronized=no\n") is False
    assert parse_timedatectl("") is None
    assert from_adjtimex(TIME_ERROR, STA_UNSYNC).synchronised is False
    assert from_adjtimex(0, STA_UNSYNC).synchronised is False
    assert from_adjtimex(0, 0x2001).synchronised is True  # TIME_OK, STA_PLL | STA_NANO
