"""The CLI contract other tools rely on, on real cores."""

import json
import subprocess
import sys

from coretriage.cli import main


def cli(capsys, data, *argv):
    code = main(["--data-dir", str(data), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_ingest_list_show_export(capsys, tmp_path, samples):
    s = samples("double_free")
    got = json.loads(cli(capsys, tmp_path, "ingest", str(s.core), "--exe", str(s.exe), "--json"))
    assert {"crash_id", "group_id", "signature", "key_frames", "signal"} <= got.keys()
    assert got["signal"] == "SIGABRT" and got["signature"] == s.expected_signature
    assert [f["function"] for f in got["key_frames"]][:2] == ["session_release", "close_connection"]

    groups = json.loads(cli(capsys, tmp_path, "list", "--json"))
    assert groups[0]["group_id"] == got["group_id"] and groups[0]["count"] == 1
    assert groups[0]["first_seen"] <= groups[0]["last_seen"]

    shown = json.loads(cli(capsys, tmp_path, "show", got["crash_id"], "--json"))
    assert shown["analysis"]["abort_message"] == "free(): double free detected in tcache 2"
    assert shown["analysis"]["registers"] and shown["analysis"]["disassembly"]
    assert shown["analysis"]["modules"][0]["build_id"]

    text = cli(capsys, tmp_path, "export", got["crash_id"], "--format", "text")
    assert "free(): double free detected in tcache 2" in text and "*#" in text
    md = cli(capsys, tmp_path, "export", got["group_id"], "--format", "markdown")
    assert md.startswith(f"## Crash group {got['group_id']}") and "```" in md
    js = json.loads(cli(capsys, tmp_path, "export", got["group_id"], "--format", "json"))
    assert js["count"] == 1 and js["crashes"][0]["crash_id"] == got["crash_id"]
    listing = cli(capsys, tmp_path, "list")
    assert got["group_id"] in listing and "session_release" in listing


def test_gdb_opens_stored_core_with_its_executable(capsys, tmp_path, samples):
    s = samples("segv")
    crash_id = json.loads(cli(capsys, tmp_path, "ingest", str(s.core), "--exe", str(s.exe), "--json"))["crash_id"]
    s.core.with_suffix(".moved").write_bytes(b"")  # the original core is not needed any more
    proc = subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(tmp_path), "gdb", crash_id,
                           "-batch", "-ex", "bt"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "header_length" in proc.stdout and "parse_request" in proc.stdout


def test_entry_point_installed():
    import shutil
    assert shutil.which("coretriage") or (sys.prefix and __import__("pathlib").Path(sys.prefix, "bin", "coretriage").exists())
