"""The collector's systemd unit carries the hardening directives (finding 6
of issue 8), and systemd itself accepts them (``systemd-analyze verify``,
where it is installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.hostsetup.render import collector_unit


def directives(unit: str) -> dict[str, str]:
    out = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def test_the_collector_unit_is_hardened():
    d = directives(collector_unit("/opt/coretriage/bin/python", Path("/var/lib/coretriage")))
    assert d["NoNewPrivileges"] == "yes"
    assert d["ProtectSystem"] == "strict" and d["ReadWritePaths"] == "/var/lib/coretriage"
    assert d["ProtectHome"] == "yes"
    for key in ("PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
                "RestrictSUIDSGID", "RestrictRealtime", "LockPersonality"):
        assert d[key] == "yes", key
    assert d["UMask"] == "0077" and d["AmbientCapabilities"] == ""
    # the analysis sandbox's namespaces and nothing else: no user namespaces, no cgroup ones
    assert set(d["RestrictNamespaces"].split()) == {"mnt", "pid", "ipc", "uts", "net"}
    caps = set(d["CapabilityBoundingSet"].split())
    assert {"CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"} <= caps  # what the sandbox needs
    assert not caps & {"CAP_SYS_MODULE", "CAP_NET_ADMIN", "CAP_SYS_RAWIO", "CAP_MKNOD", "CAP_SYS_BOOT",
                       "CAP_NET_RAW", "CAP_BPF", "CAP_SYS_TIME", "CAP_LINUX_IMMUTABLE"}
    assert d["SystemCallFilter"].startswith("@system-service")
    assert set(d["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_a_data_dir_with_spaces_is_one_writable_path_and_homes_stay_readable():
    d = directives(collector_unit("/root/venv/bin/python", Path("/srv/core dumps/100%")))
    assert d["ReadWritePaths"] == '"/srv/core dumps/100%%"'
    assert d["ProtectHome"] == "read-only"  # yes would hide the venv itself


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_every_directive(tmp_path):
    unit = tmp_path / "coretriage-collector.service"
    unit.write_text(collector_unit(sys.executable, Path("/var/lib/coretriage")))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    # unknown keys and bad values are only warnings: there must be none
    assert unit.name not in done.stderr, done.stderr
