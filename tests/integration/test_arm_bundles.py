"""The committed aarch64 sample bundles (sample-cores/bundles/aarch64-*):
real qemu-aarch64 cores of static glibc programs, read here with nothing of
the cross toolchain, only gdb-multiarch; and the demo ingests them."""

import json

import pytest

from analyzer.analyze import analyze_core
from analyzer.signature import generate
from coretriage.demo import CHECKOUT_SAMPLES, _ingest_bundles
from coretriage.ingest import decompressed

BUNDLES = sorted(p.parent for p in (CHECKOUT_SAMPLES / "bundles").glob("aarch64-*/bundle.json"))


def test_there_are_aarch64_bundles():
    assert [b.name for b in BUNDLES] == ["aarch64-assert", "aarch64-strlen"]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_bundle_analyzes_to_its_signature(tmp_path, bundle):
    meta = json.loads((bundle / "bundle.json").read_text())
    with decompressed(bundle / "core.zst", tmp_path) as core, decompressed(bundle / meta["exe"], tmp_path) as exe:
        a = analyze_core(core, exe)
    sig = generate(a)
    assert a.architecture == meta["architecture"] == "aarch64" and a.problems == ()
    assert sig.text == meta["expected_signature"]
    assert a.crashing_thread.frames[sig.key_frames[0]].function in ("header_length", "check_queue")
    regs = dict(a.registers)
    assert list(regs)[:2] == ["x0", "x1"] and {"x29", "x30", "sp", "pc", "cpsr"} <= regs.keys()
    module = a.modules[0]  # the program, placed by its own headers: a qemu core has no NT_FILE
    assert a.crashing_thread.frames[sig.key_frames[0]].build_id == module.build_id and len(module.build_id) == 40


def test_demo_ingests_the_aarch64_bundles(config, store, capsys):
    _ingest_bundles(config, store, CHECKOUT_SAMPLES)
    out = capsys.readouterr().out
    assert "aarch64-strlen" in out and "strlen | header_length | parse_request | main" in out
    assert "check_queue | main | assert(depth < 16)" in out
    stored = [store.crash(cid) for cid, _ in store.crash_ids()]
    arm = [r for r in stored if r.analysis.get("architecture") == "aarch64"]
    assert len(arm) == 2 and all(r.exe_file for r in arm)  # the program kept with the crash


def test_cli_ingest_then_gdb_on_an_aarch64_core(capsys, tmp_path):
    """``coretriage ingest`` then ``coretriage gdb``: the stored foreign core
    opens in gdb-multiarch with its program, as an x86-64 one in gdb."""
    import subprocess
    import sys

    from coretriage.cli import main

    bundle = CHECKOUT_SAMPLES / "bundles" / "aarch64-strlen"
    with decompressed(bundle / "core.zst", tmp_path / "t") as core, \
            decompressed(bundle / "aarch64-strlen.zst", tmp_path / "t") as exe:
        assert main(["--data-dir", str(tmp_path / "d"), "ingest", str(core), "--exe", str(exe), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["signature"] == "strlen | header_length | parse_request | main"
    proc = subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(tmp_path / "d"), "gdb",
                           got["crash_id"], "-batch", "-ex", "bt"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "__strlen_mte" in proc.stdout and "header_length" in proc.stdout


def test_host_gdb_on_a_foreign_core_says_what_is_missing(tmp_path):
    """The issue's traceback: the host's x86-64 gdb reads every frame
    address of an aarch64 core as <unavailable>. A record that says why,
    never an exception."""
    from analyzer.analyze import analyze_here
    from analyzer.gdb import Gdb

    bundle = CHECKOUT_SAMPLES / "bundles" / "aarch64-strlen"
    with decompressed(bundle / "core.zst", tmp_path) as core, \
            decompressed(bundle / "aarch64-strlen.zst", tmp_path) as exe:
        a = analyze_here(core, exe, gdb=Gdb(gdb="gdb"))  # the host gdb, not the sandbox's multiarch one
    assert a.architecture == "aarch64"
    assert a.problems[0].code == "foreign_arch" and "gdb-multiarch" in a.problems[0].message
    frames = a.crashing_thread.frames
    assert frames and frames[0].pc is None and "pc" in frames[0].unavailable
    generate(a)  # and it still gets a signature


def test_unavailable_frames_show_as_such_on_the_crash_page(config, store, tmp_path, monkeypatch):
    """The crash analyzed by the host's gdb (every pc unavailable) is stored
    and shown: its frames say <unavailable>, the page says the architecture."""
    from analyzer.analyze import analyze_here
    from analyzer.gdb import Gdb
    from coretriage import ingest as ingest_module
    from coretriage.ingest import ingest
    from webclient import viewer_test_client
    from webui import create_app

    bundle = CHECKOUT_SAMPLES / "bundles" / "aarch64-strlen"
    with decompressed(bundle / "core.zst", tmp_path) as core, \
            decompressed(bundle / "aarch64-strlen.zst", tmp_path) as exe:
        # the same real analysis, by the host's gdb (the sandbox would start gdb-multiarch)
        monkeypatch.setattr(ingest_module, "_analyze", lambda config, core, exe, sysroot, gdb=None, **_kw:
                            analyze_here(core, exe, sysroot, gdb=Gdb(gdb="gdb")))
        done = ingest(config, store, core, exe)
    app = create_app({"CORETRIAGE": config, "TESTING": True})
    c = viewer_test_client(app)
    page = c.get(f"/crashes/{done.crash.id}").text
    assert "pc &lt;unavailable&gt;" in page and '<dd class="arch">aarch64</dd>' in page
    assert "no gdb-multiarch to read it" in page
    export = c.get(f"/export/{done.crash.id}?format=json").json
    assert export["analysis"]["threads"][0]["frames"][0]["unavailable"] == ["pc"]
