"""collector/bundle.py: bundle meta, bundle ids, hostile names and a
bundle's file names."""

import json
import os

import pytest

from builders import bundle_meta
from collector.bundle import BundleMeta, bundle_id, display, is_bundle_id


def test_meta_round_trip():
    meta = bundle_meta()
    assert BundleMeta.from_json(meta.to_json()) == meta
    dropped = bundle_meta(core_file=None, core_compressed_size=None, dropped="rate limit", container_id=None)
    assert BundleMeta.from_json(dropped.to_json()) == dropped
    data = json.loads(meta.to_json())
    assert data["cmdline"] == list(meta.cmdline) and data["core_file"] == "core.zst"
    data["a_field_from_the_future"] = 1  # newer writers, older readers
    assert BundleMeta.from_dict(data) == meta


def test_meta_rejects_bad_input():
    good = json.loads(bundle_meta().to_json())
    for key, value in (("id", "../../etc"), ("id", "1-2-3"), ("pid", "12"), ("cmdline", "ls -l"),
                       ("container_id", "../x"), ("environ", ["A=b"]), ("problems", [1])):
        with pytest.raises(ValueError):
            BundleMeta.from_dict({**good, key: value})
    with pytest.raises(ValueError):
        BundleMeta.from_dict({k: v for k, v in good.items() if k != "signal"})
    with pytest.raises(ValueError):
        BundleMeta.from_json("{not json")


HOSTILE = [b"evil\nname", b"..", b"../../etc/passwd", b"a/b", b"\xff\xfe bad utf8", b"-s", b"\x1b[31mred",
           b"x" * 300, b"caf\xc3\xa9"]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_names_stay_in_meta(raw):
    name = display(raw)
    assert "\udcff" not in name and name.encode("utf-8")  # always encodable
    meta = bundle_meta(exe="/tmp/" + name, comm=name, cmdline=(name,))
    text = meta.to_json()
    assert text.isascii() and len(text.splitlines()) == len(meta.to_json().splitlines())
    assert "\n" not in json.dumps(meta.exe)  # a newline is escaped
    back = BundleMeta.from_json(text)
    assert back.exe == meta.exe and back.comm == name
    # the bundle id never contains anything of the name
    bid = bundle_id(1795619035, 4242, "0a1b2c3d")
    assert bid == "1795619035-4242-0a1b2c3d" and is_bundle_id(bid)


def test_display_escapes_non_utf8():
    assert display(b"\xff\xfeab") == "\\xff\\xfeab"
    assert display(b"caf\xc3\xa9") == "café"
    assert display(os.fsdecode(b"x\xffy")) == "x\\xffy"  # argv decoded with surrogateescape


def test_bundle_ids():
    assert bundle_id(5, 1, "deadbeef") == "0000000005-1-deadbeef"
    assert sorted([bundle_id(1795619036, 2, "00000000"), bundle_id(1795619035, 99999, "ffffffff")])[0] \
        .startswith("1795619035")
    for bad in ("..", "1795619035-1-DEADBEEF", "1795619035-1-deadbeef/..", "x1795619035-1-deadbeef", None):
        assert not is_bundle_id(bad)
    with pytest.raises(ValueError):
        bundle_id(1, 2, "../x")


def test_bundle_names_and_paths(tmp_path):
    from collector.bundle import Bundle

    b = Bundle(tmp_path / "1700000000-42-0badf00d")
    assert b.id == "1700000000-42-0badf00d"
    assert (b.core.name, b.meta.name, b.root.name) == ("core.zst", "meta.json", "root")
    assert not b.is_finished() and not b.is_done() and not b.was_evicted()
    b.dir.mkdir()
    b.meta.write_text("{}")
    (b.dir / Bundle.DONE).touch()
    (b.dir / Bundle.EVICTED).touch()
    assert b.is_finished() and b.is_done() and b.was_evicted()
