"""collector/pruning.py: the retention decision and its settings."""

from __future__ import annotations

import pytest

from collector.pruning import (References, RetentionError, RetentionLimits, SpooledBundle, StoredFile,
                               limits_from_dict, load_limits, plan)

DAY = 86400.0
NOW = 1_800_000_000.0
LIMITS = RetentionLimits(max_age=14 * DAY, max_size=1 << 40, interval=3600, grace=600)


def bundle(name: str, age: float, *files: str, done: bool = True, size: int = 4096) -> SpooledBundle:
    return SpooledBundle(f"1795619035-{name}-0a1b2c3d", done, NOW - age, size, frozenset(files))


def stored(key: str, age: float, links: int = 1, size: int = 1 << 20) -> StoredFile:
    return StoredFile(key, size, NOW - age, links)


def sha(n: int) -> str:
    return f"sha256/{n:064x}"


def test_old_done_bundles_and_unreferenced_files_go():
    p = plan([bundle("1", 20 * DAY, sha(1))], [stored(sha(1), 20 * DAY, links=2), stored(sha(2), 20 * DAY)],
             References(), LIMITS, NOW)
    assert p.bundles == ("1795619035-1-0a1b2c3d",)
    assert set(p.files) == {sha(1), sha(2)}  # sha(1) was linked only by the bundle that went


def test_referenced_files_and_waiting_bundles_stay_whatever_the_limits():
    tiny = RetentionLimits(max_age=1, max_size=0, grace=0)
    bundles = [bundle("1", 30 * DAY, sha(1), done=False), bundle("2", 30 * DAY, sha(2))]
    files = [stored(sha(1), 30 * DAY, links=2), stored(sha(2), 30 * DAY, links=2), stored(sha(3), 30 * DAY),
             stored("93ac61ec5a8eb1396f9fbd350e3169a558528a40/libc.so.6", 30 * DAY)]
    p = plan(bundles, files, References(files=frozenset({sha(3)})), tiny, NOW)
    assert p.bundles == ("1795619035-2-0a1b2c3d",)  # the unprocessed one stays
    # sha(1): the unprocessed bundle's; sha(3): a stored crash's; the old layout's unused file goes
    assert set(p.files) == {sha(2), "93ac61ec5a8eb1396f9fbd350e3169a558528a40/libc.so.6"}
    assert p.over == 2 * (1 << 20) + 4096  # what is held, reported, not removed


def test_bundle_held_by_an_old_crash_and_its_links_stay():
    p = plan([bundle("1", 30 * DAY)], [stored("0" * 40 + "/app", 30 * DAY, links=2)],
             References(bundles=frozenset({"1795619035-1-0a1b2c3d"})), LIMITS, NOW)
    assert p.bundles == () and p.files == ()


def test_nothing_within_the_grace_period():
    p = plan([bundle("1", 60)], [stored(sha(1), 60)], References(), RetentionLimits(max_age=1, max_size=0), NOW)
    assert p.bundles == () and p.files == ()


def test_file_linked_by_a_bundle_that_is_not_listed_stays():
    # an old-layout bundle (no files.json) still links it: its link count says so
    p = plan([], [stored(sha(1), 30 * DAY, links=2)], References(), LIMITS, NOW)
    assert p.files == ()


def test_over_max_size_the_oldest_go_first_and_their_files_with_them():
    limits = RetentionLimits(max_age=365 * DAY, max_size=(3 << 20) + 2 * 4096, grace=600)
    bundles = [bundle("1", 5 * DAY, sha(1)), bundle("2", 3 * DAY, sha(2)), bundle("3", 1 * DAY, sha(3))]
    files = [stored(sha(1), 5 * DAY, links=2), stored(sha(2), 3 * DAY, links=2), stored(sha(3), 1 * DAY, links=2),
             stored(sha(4), 4 * DAY)]
    p = plan(bundles, files, References(), limits, NOW)
    assert p.total == 4 * (1 << 20) + 3 * 4096
    assert p.bundles == ("1795619035-1-0a1b2c3d",)
    assert p.files == (sha(1),)  # freed by its bundle, then under the limit
    assert p.total - p.freed <= limits.max_size and p.over == 0


def test_settings():
    assert limits_from_dict({"max_age": "7d", "max_size": "5G", "interval": "30m"}) == \
        RetentionLimits(max_age=7 * DAY, max_size=5 << 30, interval=1800)
    assert limits_from_dict({"max_age": 3600}).max_age == 3600
    for bad in ({"max_age": "soon"}, {"max_age": 0}, {"max_size": "-1"}, {"max_size": True}, {"keep": 1}):
        with pytest.raises(RetentionError):
            limits_from_dict(bad)


def test_settings_from_collector_toml(tmp_path):
    assert load_limits(tmp_path) == RetentionLimits()
    (tmp_path / "collector.toml").write_text('max_core_size = "1G"\n[retention]\nmax_size = "2G"\n')
    assert load_limits(tmp_path).max_size == 2 << 30
    (tmp_path / "collector.toml").write_text('[retention]\nmax_age = "a while"\n')
    with pytest.raises(RetentionError, match="collector.toml.*max_age"):
        load_limits(tmp_path)
