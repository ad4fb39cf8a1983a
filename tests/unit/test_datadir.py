"""coretriage/datadir.py: the data dir and what is in it are the owner's alone."""

import os
import stat

import pytest

from coretriage.datadir import DataDirError, open_private, private_dirs, private_file


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_data_dir_is_0700_and_what_goes_in_it_private(tmp_path, umask_022):
    data = open_private(tmp_path / "a" / "data")
    assert mode(data) == 0o700 and mode(tmp_path / "a") == 0o755  # a parent is not ours alone
    private_dirs(data / "cores" / "ab")
    assert mode(data / "cores") == mode(data / "cores" / "ab") == 0o700
    private_file(data / "coretriage.db")
    assert mode(data / "coretriage.db") == 0o600
    private_file(data / "coretriage.db-wal", create=False)
    assert not (data / "coretriage.db-wal").exists()


def test_an_older_looser_data_dir_is_tightened_symlinks_untouched(tmp_path, umask_022):
    data = tmp_path / "data"
    (data / "cores").mkdir(parents=True)
    (data / "cores" / "c.zst").write_bytes(b"core")
    (data / "bin").mkdir()
    (data / "bin" / "wrapper").write_text("#!/bin/sh\n")
    (data / "bin" / "wrapper").chmod(0o755)
    outside = tmp_path / "outside"
    outside.write_text("not ours to change")
    (data / "link").symlink_to(outside)
    open_private(data)
    assert mode(data) == mode(data / "cores") == mode(data / "bin") == 0o700
    assert mode(data / "cores" / "c.zst") == 0o600 and mode(data / "bin" / "wrapper") == 0o700
    assert mode(outside) == 0o644


def test_a_data_dir_of_another_user_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chown(data, 65534, 65534)
    with pytest.raises(DataDirError, match="belongs to uid 65534, not to uid 0"):
        open_private(data)
    assert mode(data) == 0o755


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "data").write_text("")
    with pytest.raises(DataDirError, match="Not a directory"):
        open_private(tmp_path / "data")


def test_a_loose_directory_that_is_not_a_data_dir_is_refused_untouched(tmp_path, umask_022):
    etc = tmp_path / "etc"  # --data-dir /etc by mistake
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    with pytest.raises(DataDirError, match="holds none of coretriage's files: refused"):
        open_private(etc)
    assert mode(etc) == 0o755 and mode(etc / "passwd") == 0o644
    empty = tmp_path / "empty"  # made by hand for coretriage: fine
    empty.mkdir()
    assert mode(open_private(empty)) == 0o700


def test_a_data_dir_another_user_could_swap_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(DataDirError, match=f"{theirs} is owned by uid 65534, not root, so another user could"):
        open_private(theirs / "data")
    assert not (theirs / "data").exists()


def test_a_database_of_another_name_makes_a_data_dir_coretriage_s(tmp_path, umask_022):
    from coretriage.config import Config
    from coretriage.datadir import open_data_dir

    data = tmp_path / "data"
    data.mkdir()
    (data / "crashes.db").write_bytes(b"")
    config = Config(data_dir=data, database_url=f"sqlite:///{data}/crashes.db")
    open_data_dir(config)
    assert mode(data) == 0o700 and mode(data / "crashes.db") == 0o600
