"""coretriage/cli.py: the contract other tools rely on, on real cores;
prune; every error is one line, never a traceback."""

import json
import subprocess
import sys

import pytest

from coretriage.cli import main
from coretriage.ingest import ingest


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


def test_prune_keeps_the_newest_cores_of_each_group(config, store, samples, capsys):
    from coretriage.cli import main

    done = [ingest(config, store, samples("segv", v).core, samples("segv", v).exe, crashed_at=1000.0 + v)
            for v in range(3)]
    other = ingest(config, store, samples("musl").core, samples("musl").exe, crashed_at=500.0)
    assert main(["--data-dir", str(config.data_dir), "prune", "--keep", "1"]) == 0
    assert "freed" in capsys.readouterr().out
    newest, older = done[2].crash, [d.crash for d in done[:2]]
    assert (config.data_dir / newest.core_file).is_file()
    for row in older:
        assert not (config.data_dir / row.core_file).exists() and store.crash(row.id).core_file is None
        assert store.crash(row.id).analysis["threads"]  # the analysis stays
    assert store.crash(other.crash.id).core_file is not None  # its group's only core
    assert store.group(newest.group_id).count == 3


# ---- errors ----

def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["show", "c123"], "neither a crash id"),
    (["show", "c000000000000"], "no crash c000000000000"),
    (["export", "g999", "--format", "text"], "no group g999"),
    (["ingest", "/nonexistent/core"], "no such file"),
    (["ingest", "/bin/true"], "not a core dump"),
    (["ingest", "/bin/true", "--exe", "/nonexistent"], "executable not found"),
    (["gdb", "g5"], "no group g5"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, "--data-dir", str(tmp_path), *argv)
    assert code != 0
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_config_is_one_line(capsys, tmp_path):
    (tmp_path / "coretriage.toml").write_text("this is = = not toml")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "list")
    assert code == 1 and err.startswith("coretriage: error:") and err.count("\n") == 1


def test_notify_test_and_remove(capsys, tmp_path):
    from alertreceivers import Receiver
    from servicekit import free_port

    receiver = Receiver()
    try:
        cli(capsys, tmp_path, "notify", "add", "hook", "--webhook", receiver.url, "--secret", "k")
        cli(capsys, tmp_path, "notify", "add", "gone", "--webhook", f"http://127.0.0.1:{free_port()}/")
        assert "test alert sent to hook" in cli(capsys, tmp_path, "notify", "test", "hook")
        (headers, body), = receiver.posts
        assert json.loads(body)["event"] == "test" and headers["X-Coretriage-Signature"].startswith("sha256=")
        code, _, err = run(capsys, "--data-dir", str(tmp_path), "notify", "test", "gone")  # nobody listens
        assert code != 0 and "refused" in err and err.count("\n") == 1 and "Traceback" not in err
        assert "channel hook removed" in cli(capsys, tmp_path, "notify", "remove", "hook")
        assert [c["name"] for c in json.loads(cli(capsys, tmp_path, "notify", "list", "--json"))] == ["gone"]
        for verb in ("remove", "test"):
            code, _, err = run(capsys, "--data-dir", str(tmp_path), "notify", verb, "hook")
            assert code != 0 and "no channel hook" in err and err.count("\n") == 1
        assert len(receiver.posts) == 1
    finally:
        receiver.close()


def test_notify_add_digest_and_bad_channels(capsys, tmp_path):
    cli(capsys, tmp_path, "notify", "add", "daily", "--webhook", "https://hooks.example/x", "--digest", "1h",
        "--quiet", "1m")
    (listed,) = json.loads(cli(capsys, tmp_path, "notify", "list", "--json"))
    assert listed["digest"] == 3600 and listed["quiet"] == 60 and listed["events"] == ["new", "regression", "spike"]
    assert "digest=3600" in cli(capsys, tmp_path, "notify", "list")
    for argv, message in ((["--webhook", "https://h.example", "--digest", "soon"], "not a duration"),
                          (["--webhook", "https://h.example", "--digest", "90d"], "between 0 and 31 days"),
                          (["--webhook", "https://h.example", "--quiet", "-5"], "between 0 and 31 days"),
                          (["--webhook", "ftp://h.example"], "http:// or https://"),
                          (["--email", "a@b.example", "--webhook", "https://h.example"], "give one of"),
                          (["--email", "a@b.example", "--secret", "k"], "email channels have none"),
                          (["--email", "a@b.example", "--events", "new,boom"], "unknown event kind")):
        code, _, err = run(capsys, "--data-dir", str(tmp_path), "notify", "add", "bad", *argv)
        assert code != 0 and message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "notify", "add", "two words", "--email", "a@b.example")
    assert code != 0 and "a channel name is" in err
