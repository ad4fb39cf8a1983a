"""collector/spool.py on a temporary directory: bundles made, listed, read,
marked done; symlinks, foreign modes and another bundle's meta refused."""

import os

import pytest

from builders import bundle_meta
from collector.spool import (SpoolError, create_bundle, finished_bundles, is_done, mark_done, open_spool,
                             read_meta, unfinished_bundles, write_meta)


def test_spool_bundles(tmp_path):
    spool = tmp_path / "spool"
    fd = open_spool(spool)
    try:
        assert oct(spool.stat().st_mode & 0o777) == "0o700"
        ids = ["1795619036-20-00000001", "1795619035-99-00000002", "1795619037-5-00000003"]
        for bid in ids:
            bfd = create_bundle(fd, bid)
            try:
                if bid != ids[2]:  # the last one is still being written
                    write_meta(bfd, bundle_meta(id=bid))
            finally:
                os.close(bfd)
        with pytest.raises(FileExistsError):
            create_bundle(fd, ids[0])
        with pytest.raises(SpoolError):
            create_bundle(fd, "../escape")
    finally:
        os.close(fd)
    (spool / "not-a-bundle").mkdir()
    (spool / "1795619038-1-00000004").symlink_to(spool / ids[0])
    found = list(finished_bundles(spool))
    assert [p.name for p in found] == sorted(ids[:2])
    assert [p.name for p in unfinished_bundles(spool)] == [ids[2]]
    meta = read_meta(found[0])
    assert meta.id == found[0].name and meta.exe == "/usr/sbin/haproxy"
    assert oct((found[0] / "meta.json").stat().st_mode & 0o777) == "0o600"
    assert not list(found[0].glob(".meta.json.tmp-*"))
    mark_done(found[0])
    mark_done(found[0])  # idempotent
    assert is_done(found[0])
    assert [p.name for p in finished_bundles(spool)] == [found[1].name]
    assert len(list(finished_bundles(spool, include_done=True))) == 2
    assert list(finished_bundles(tmp_path / "missing")) == []


def test_spool_refuses_symlink_and_foreign_modes(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SpoolError, match="symlink"):
        open_spool(link)
    open_dir = tmp_path / "world"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(SpoolError, match="refused"):
        open_spool(open_dir)


def test_meta_of_another_bundle_refused(tmp_path):
    spool = tmp_path / "spool"
    fd = open_spool(spool)
    bfd = create_bundle(fd, "1795619035-1-00000001")
    write_meta(bfd, bundle_meta(id="1795619035-2-00000002"))
    os.close(bfd)
    os.close(fd)
    with pytest.raises(ValueError, match="belongs to"):
        read_meta(spool / "1795619035-1-00000001")


def test_eviction_passes_over_a_bundle_being_written(tmp_path):
    """The writer's flock on its bundle directory keeps its core from
    eviction until it closes the directory; then the core may go."""
    from collector.retention import make_room
    from collector.spool import create_file

    spool = tmp_path / "spool"
    fd = open_spool(spool)
    older, writing = "1795619035-1-00000001", "1795619036-2-00000002"
    try:
        done = create_bundle(fd, older)
        core = create_file(done, "core.zst")
        os.write(core, b"x" * 100)
        os.close(core)
        write_meta(done, bundle_meta(id=older))
        os.close(done)
        busy = create_bundle(fd, writing)
        core = create_file(busy, "core.zst")
        os.write(core, b"x" * 100)  # still open: the handler is writing it
        os.close(core)
        assert make_room(fd, max_use=0, min_free=0, keep="") == [older]
        assert (spool / writing / "core.zst").exists() and not (spool / writing / "evicted").exists()
        assert make_room(fd, max_use=0, min_free=0, keep="") == []  # still locked
        os.close(busy)  # the writer is done (or died): the lock goes with its fd
        assert make_room(fd, max_use=0, min_free=0, keep="") == [writing]
        assert (spool / writing / "evicted").exists() and not (spool / writing / "core.zst").exists()
    finally:
        os.close(fd)
