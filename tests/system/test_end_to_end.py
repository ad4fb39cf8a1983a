"""The whole host pipeline through the real kernel: host-setup install, a
crash, the pipe handler's bundle, the collector, the analysis, the groups,
and uninstall putting everything back."""

import json
import shutil
import subprocess
import time

import crashkit
from collecting import collecting
from collector.corepattern import read_pattern
from hostfixtures import cli


def test_crash_to_group_through_the_kernel(collector_installed, samples, tmp_path):
    installed = collector_installed
    assert read_pattern().startswith("|") and "collector.handler" in read_pattern()
    doctor = json.loads(cli(installed, "host-setup", "doctor", "--json", check=False).stdout)
    assert {c["name"]: c["status"] for c in doctor}["core_pattern"] == "OK"

    with collecting(installed, join_timeout=30) as (config, store):
        # the program lives in a directory we delete before the analysis: only
        # the bundle's own copy of it can give its symbols
        exe = tmp_path / "app" / "segv"
        exe.parent.mkdir()
        shutil.copy(samples("segv").exe, exe)
        for n in range(3):
            proc = subprocess.run([str(exe), "x" * n], preexec_fn=crashkit.allow_cores, capture_output=True)
            assert proc.returncode == -11
        shutil.rmtree(exe.parent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(g.count for g in store.groups()) < 3:
            time.sleep(0.2)

    groups = json.loads(cli(installed, "list", "--json").stdout)
    assert len(groups) == 1 and groups[0]["count"] == 3
    assert groups[0]["signature"] == samples("segv").expected_signature
    crash_id = store.crashes_of(int(groups[0]["group_id"][1:]))[0].id
    shown = json.loads(cli(installed, "show", crash_id, "--json").stdout)
    modules = {m["path"]: m for m in shown["analysis"]["modules"]}
    assert modules[str(exe)]["found_at"].startswith(str(config.spool_dir))  # from the bundle's sysroot
    assert shown["meta"]["pid"] and shown["meta"]["host_time"] and shown["host"]
    assert not shown["analysis"]["problems"]
