"""collector/sysroot.py: what a maps line says about a mapped file, and a bundle's files.json."""

from __future__ import annotations

import os

from collector.sysroot import Kept, manifest_json, mapped_files, read_manifest

MAPS = b"""\
55c1b8f30000-55c1b8f31000 r--p 00000000 fe:00 2146865                    /app
55c1b8f31000-55c1b8f32000 r-xp 00001000 fe:00 2146865                    /app
7f647a533000-7f647a534000 r--p 00000000 00:27 2                          /usr/lib/libc.so.6
7f647a537000-7f647a539000 rw-p 00000000 00:00 0 
7f647a541000-7f647a542000 r--p 00000000 103:02 77                        /lib/old.so (deleted)
7f647a541000-7f647a542000 r--p 00000000 103:02 78                        /lib/with space.so
7ffd1c5e0000-7ffd1c601000 rw-p 00000000 00:00 0                          [stack]
"""


def test_mapped_files_carry_device_and_inode():
    assert mapped_files(MAPS) == [
        (os.makedev(0xFE, 0), 2146865, b"/app"),
        (os.makedev(0, 0x27), 2, b"/usr/lib/libc.so.6"),
        (os.makedev(0x103, 2), 78, b"/lib/with space.so"),
    ]


def test_manifest_round_trip(tmp_path):
    kept = [Kept("/app", "a" * 64, "1234", 10), Kept("/usr/lib/libc.so.6", "b" * 64, "5678", 20)]
    (tmp_path / "files.json").write_bytes(manifest_json(kept))
    assert read_manifest(tmp_path) is None  # no root/: the list names nothing the bundle holds
    (tmp_path / "root").mkdir()
    assert read_manifest(tmp_path) == {"/app": "a" * 64, "/usr/lib/libc.so.6": "b" * 64}


def test_manifest_entries_that_are_not_hashes_are_ignored(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "files.json").write_text('{"files": [{"path": "/x", "sha256": "../../etc/passwd"}, '
                                         '{"path": "/y", "sha256": "' + "c" * 64 + '"}, "junk"]}')
    assert read_manifest(tmp_path) == {"/y": "c" * 64}
    assert read_manifest(tmp_path / "nothing") is None
