"""collector/pathtrust.untrusted_path and hostsetup/trust.untrusted_python on real
directories (install's use of them is in test_hostsetup_install.py)."""

import os
import sys

from collector.pathtrust import untrusted_path
from collector.hostsetup.trust import probe, untrusted_python


def test_symlinks_are_walked_and_checked(short_tmp):
    (short_tmp / "real" / "data").mkdir(parents=True)
    (short_tmp / "rel").symlink_to("real")  # relative: resolved from its own directory
    assert untrusted_path(short_tmp / "rel" / "data") is None
    theirs = short_tmp / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    (short_tmp / "via").symlink_to(theirs / ".." / "real")  # through a directory another user owns
    assert untrusted_path(short_tmp / "via" / "data") == f"{theirs} is owned by uid 65534, not root"
    (short_tmp / "a").symlink_to("b")
    (short_tmp / "b").symlink_to("a")
    assert untrusted_path(short_tmp / "a" / "x").endswith("too many symlinks")
    assert untrusted_path(short_tmp / "missing" / "data") is None  # root will create it
    sticky = short_tmp / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert untrusted_path(sticky) is None
    (sticky / "f").write_text("")
    (sticky / "f").chmod(0o666)  # the sticky bit protects names, not a file others may write
    assert "writable by group or others" in untrusted_path(sticky / "f")


def test_this_python_is_root_s_and_says_where_it_imports_from():
    assert untrusted_python(sys.executable) is None
    found = probe(sys.executable)
    assert set(found["packages"]) == {"collector", "analyzer", "zstandard"}
    assert untrusted_python("python3").endswith("not an absolute path")
