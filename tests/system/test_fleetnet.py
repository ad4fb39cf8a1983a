"""The fleet harness itself (tests/system/fleetnet.py): three simulated hosts
in their own network and UTS namespaces, a central node they can all reach
over TCP, and each host's kernel crash captured by the real pipe handler
into that host's own data dir, through the real kernel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import crashkit
from collector.corepattern import read_pattern
from collector.spool import finished_bundles
from fleetnet import CENTRAL, core_router, fleet
from handlerkit import bundle_of, crash
from waiting import wait_for

HOSTS = ("host1", "host2", "host3")
PORT = 7913

# a one-connection-at-a-time echo server: replies with its own hostname and the peer's address
SERVER = r"""
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
for _ in range(int(sys.argv[3])):
    conn, peer = srv.accept()
    with conn:
        conn.recv(64)
        conn.sendall(f"{socket.gethostname()} {peer[0]}".encode())
"""
CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
    c.sendall(b"hi")
    print(c.recv(256).decode())
"""


def test_three_hosts_reach_central_and_each_keeps_its_own_crashes(tmp_path):
    prog = crashkit.compile_c("segv.c", tmp_path / "segv")
    pattern_before = read_pattern()
    limit_before = Path("/proc/sys/kernel/core_pipe_limit").read_text()
    data = {h: Path(f"/tmp/ctfleet-{os.getpid()}-{h}") for h in HOSTS}
    try:
        with fleet(HOSTS) as fl:
            names = {n.name: fl.run(n.name, ["hostname"]).stdout.strip() for n in fl.nodes}
            assert names == {n: n for n in (CENTRAL, *HOSTS)}
            # hosts are not in the machine's network namespace: they have only lo and eth0
            links = fl.run("host1", ["ip", "-o", "link"]).stdout
            assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == ["eth0", "lo"]

            server = fl.popen(CENTRAL, [sys.executable, "-c", SERVER, fl.central.address, str(PORT), str(len(HOSTS))],
                              stdout=subprocess.PIPE, text=True)
            assert server.stdout.readline().strip() == "listening"
            for h in HOSTS:
                reply = fl.run(h, [sys.executable, "-c", CLIENT, fl.central.address, str(PORT)]).stdout.split()
                assert reply == [CENTRAL, fl.hosts[h].address], (h, reply)
            assert server.wait(timeout=10) == 0
            # the central address is not reachable from the machine itself (no route into the bridge)
            outside = subprocess.run([sys.executable, "-c", CLIENT, fl.central.address, str(PORT)],
                                     capture_output=True, text=True, timeout=30)
            assert outside.returncode != 0

            with core_router(fl, data) as router:
                assert read_pattern() == f"|{router} %h %P %i %I %s %t %u %g %d %F %E %e"
                pids = {}
                for h in HOSTS:
                    pid, _ = crash(fl.hosts[h].argv([prog, f"GET /{h} HTTP/1.1"]), preexec_fn=crashkit.allow_cores)
                    pids[h] = pid
                bundles = {h: bundle_of(data[h] / "spool", pids[h]) for h in HOSTS}
            assert read_pattern() == pattern_before

        for h in HOSTS:
            meta = json.loads((bundles[h] / "meta.json").read_text())
            assert meta["pid"] == pids[h] and meta["exe"] == str(prog), meta
            assert meta["signal"] == 11
            assert meta["hostname"] == h, f"the handler ran outside {h}'s UTS namespace: {meta['hostname']!r}"
            assert meta["cmdline"][1] == f"GET /{h} HTTP/1.1"
            assert (bundles[h] / "core.zst").stat().st_size > 0
            # one bundle per host, in that host's data dir only
            assert [p.name for p in finished_bundles(data[h] / "spool")] == [bundles[h].name]
        # nothing is left of the namespaces, veths and bridge
        tag = str(os.getpid())
        assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                    if ns.startswith(f"ctfleet-{tag}-")]
        assert f"ctf{tag}" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    finally:
        for d in data.values():
            subprocess.run(["rm", "-rf", str(d)], check=False)
        assert read_pattern() == pattern_before
        assert Path("/proc/sys/kernel/core_pipe_limit").read_text() == limit_before


def test_teardown_after_a_failure_leaves_nothing(tmp_path):
    tag = str(os.getpid())
    try:
        with fleet(("solo",)) as fl:
            sleeper = fl.popen("solo", ["sleep", "600"])
            raise RuntimeError("a test failing inside the block")
    except RuntimeError:
        pass
    wait_for(lambda: sleeper.poll() is not None, timeout=10, what="the sleeper killed")
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith(f"ctfleet-{tag}-")]
    assert f"ctf{tag}" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not list(Path("/run/coretriage-fleet").glob(f"{tag}-*"))


def test_reach_lets_this_process_talk_to_a_node(tmp_path):
    with fleet(("solo",), reach=True) as fl:
        server = fl.popen(CENTRAL, [sys.executable, "-c", SERVER, fl.central.address, str(PORT), "1"],
                          stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        here = subprocess.run([sys.executable, "-c", CLIENT, fl.central.address, str(PORT)], capture_output=True,
                              text=True, timeout=30)
        assert here.returncode == 0 and here.stdout.split() == [CENTRAL, "10.213.0.254"], here.stderr
    # the address went with the bridge
    assert "10.213.0.254" not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout


def test_what_a_killed_run_left_is_swept():
    # a run killed before its teardown: its pid is gone, its namespace and bridge are not
    dead = subprocess.Popen(["true"])
    dead.wait()
    ns, bridge = f"ctfleet-{dead.pid}-host1", f"ctf{dead.pid}br"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        with fleet(("solo",)):
            assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            assert bridge not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
