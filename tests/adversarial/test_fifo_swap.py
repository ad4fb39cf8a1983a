"""FIFO and device swaps: a user who can write to a dump directory swaps a
finished core for a FIFO or /dev/zero while the root collector checks the
file for writers. The collector must not hang, must not copy anything, and
must say why in one line. The swap is made from inside the collector's own
writers check (tests/system/dumpswap.py), so the race is run every time."""

import os

import pytest

from dumpswap import plant_core, take_with_swap


@pytest.fixture
def dump(tmp_path):
    d = tmp_path / "dumps"
    d.mkdir(mode=0o1777)
    os.chmod(d, 0o1777)  # like /var/crash: every user's crashes land here
    return d


def test_the_swap_point_is_real(dump, tmp_path):
    """Without a swap the same run takes the core: the tests below reach the open."""
    core = plant_core(dump)
    out = take_with_swap(dump, tmp_path / "spool", "none")
    assert not out.hung and out.returncode == 0, out.log
    assert out.taken == 1 and len(out.bundles) == 1 and not core.exists()


@pytest.mark.parametrize("how, kind", [("fifo", "a FIFO"), ("dev-zero-node", "a character device")])
def test_a_swapped_in_fifo_or_device_is_refused_without_blocking(dump, tmp_path, how, kind):
    plant_core(dump)
    out = take_with_swap(dump, tmp_path / "spool", how)
    assert not out.hung, f"the collector hung on {kind} swapped into the dump directory"
    assert out.returncode == 0 and out.taken == 0
    assert out.bundles == []  # nothing copied, not even an empty bundle
    refused = [line for line in out.log if "refused" in line]
    assert len(refused) == 1 and kind in refused[0] and "core.1234" in refused[0], out.log
    assert os.path.lexists(dump / "core.1234")  # left for its owner: not ours to remove


def test_a_swapped_in_symlink_to_dev_zero_is_refused(dump, tmp_path):
    plant_core(dump)
    out = take_with_swap(dump, tmp_path / "spool", "symlink", "/dev/zero")
    assert not out.hung and out.returncode == 0 and out.taken == 0 and out.bundles == []
    assert any("a symlink" in line and "refused" in line for line in out.log), out.log
