"""Simulated hosts on this machine: network and UTS namespaces on a bridge.

``fleet(["host1", "host2", "host3"])`` makes, with iproute2 and util-linux:

- a bridge in the root namespace, with no address unless ``reach=True``
  (then ``SUBNET.254``, so this test process reaches every node, e.g. the
  central web server, directly; the nodes still have no route beyond the
  subnet);
- a ``central`` node and one node per host name, each an ``ip netns``
  network namespace (loopback up, ``eth0`` a veth on the bridge, an address
  in ``SUBNET``) and a persistent UTS namespace of its own whose hostname is
  the node's name;
- ``Fleet.run``/``Fleet.popen``/``Node.argv``: a command inside a node's
  namespaces (``nsenter --net --uts``; no new pid namespace, so the pid a
  caller sees is the pid the kernel reports for a crash).

Everything is torn down when the block ends, whatever happened in it:
processes started through ``Fleet.popen`` are killed, then anything still
in a namespace of ours (only our commands can be there), the namespaces, the
veths and the bridge. Names carry this process's pid, so two runs never meet;
what a killed run left is swept when the next fleet starts (``sweep_stale``).

``core_router(fleet, {"host1": data1, ...})``: the kernel's core_pattern is
one setting for the whole machine, so each simulated host cannot install its
own handler. The router is a tiny script set as core_pattern (under
``pattern_lock``, put back afterwards) that is given ``%h``, the UTS hostname
of the crashing task, before the handler's own specifiers; it execs the real
pipe handler (``coretriage.services.handler_argv``: the same argv
``host-setup install`` puts in core_pattern) with that host's data dir. A
crash whose hostname is none of the simulated hosts is not read (the router
exits, so the kernel closes the pipe).

Needs root. Everything that fails, fails loudly with the command's stderr.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUBNET = "10.213.0"  # /24; central is .1, the hosts .11, .12, ...
PREFIX = 24
CENTRAL = "central"
UTS_DIR = Path("/run/coretriage-fleet")  # persistent UTS namespaces (bind mounts of nsfs)


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False,
                          **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return proc


@dataclass(frozen=True)
class Node:
    name: str  # also its hostname
    netns: str  # the `ip netns` name
    address: str
    uts: Path  # the bind-mounted UTS namespace

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this node's network and UTS namespaces."""
        return ["/usr/bin/nsenter", f"--net=/run/netns/{self.netns}", f"--uts={self.uts}", "--",
                *[str(a) for a in argv]]


@dataclass
class Fleet:
    tag: str
    bridge: str
    central: Node
    hosts: dict[str, Node]
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return [self.central, *self.hosts.values()]

    def node(self, name: str) -> Node:
        return self.central if name == CENTRAL else self.hosts[name]

    def run(self, name: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return _run(self.node(name).argv(argv), **kw)

    def popen(self, name: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """A long-running command in a node; killed when the fleet goes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.node(name).argv(argv), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc


def _veth_names(tag: str, i: int) -> tuple[str, str]:
    # IFNAMSIZ is 16: "ctf" + up to 7 digits of pid + "v" + index + side
    return f"ctf{tag}v{i}a", f"ctf{tag}v{i}b"


def _make_node(tag: str, bridge: str, i: int, name: str, address: str, made: list) -> Node:
    netns = f"ctfleet-{tag}-{name}"
    _run(["ip", "netns", "add", netns])
    made.append(("netns", netns))
    outside, inside = _veth_names(tag, i)
    _run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
    made.append(("link", outside))
    _run(["ip", "link", "set", outside, "master", bridge, "up"])
    _run(["ip", "link", "set", inside, "netns", netns])
    inns = ["ip", "-n", netns]
    _run([*inns, "link", "set", "lo", "up"])
    _run([*inns, "link", "set", inside, "name", "eth0"])
    _run([*inns, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0"])
    _run([*inns, "link", "set", "eth0", "up"])
    UTS_DIR.mkdir(mode=0o700, exist_ok=True)
    uts = UTS_DIR / f"{tag}-{name}"
    uts.touch(mode=0o600)
    made.append(("uts", uts))
    # unshare binds the new UTS namespace onto the file, so it outlives the command
    _run(["unshare", f"--uts={uts}", "hostname", name])
    node = Node(name=name, netns=netns, address=address, uts=uts)
    got = _run(node.argv(["hostname"])).stdout.strip()
    if got != name:
        pytest.fail(f"node {name}: hostname inside its UTS namespace is {got!r}")
    return node


def _teardown(fleet_procs: list[subprocess.Popen], made: list) -> list[str]:
    problems = []
    for proc in fleet_procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"pid {proc.pid} survived SIGKILL")
    for kind, what in reversed(made):
        if kind == "netns":
            # anything still in it was started by a command of ours in it
            pids = _run(["ip", "netns", "pids", what], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _run(["ip", "netns", "pids", what], check=False).stdout.split():
                if time.monotonic() > deadline:
                    problems.append(f"processes still in {what}")
                    break
                time.sleep(0.05)
            proc = _run(["ip", "netns", "delete", what], check=False)
            if proc.returncode:
                problems.append(f"ip netns delete {what}: {proc.stderr.strip()}")
        elif kind == "uts":
            subprocess.run(["umount", str(what)], capture_output=True, check=False)
            with contextlib.suppress(FileNotFoundError):
                what.unlink()
        elif kind == "link":
            # the peer went with its namespace, taking this end along; delete it if not
            if _run(["ip", "link", "show", what], check=False).returncode == 0:
                proc = _run(["ip", "link", "delete", what], check=False)
                if proc.returncode:
                    problems.append(f"ip link delete {what}: {proc.stderr.strip()}")
    return problems


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_stale() -> list[str]:
    """What a run killed before its teardown left (its pid is gone): empty
    namespaces, their UTS files and its bridge. A namespace that still holds a
    process is left alone and named."""
    import re

    left = []
    for ns in _run(["ip", "netns", "list"], check=False).stdout.split():
        m = re.fullmatch(r"ctfleet-(\d+)-\S+", ns)
        if m and not _pid_alive(int(m[1])):
            if _run(["ip", "netns", "pids", ns], check=False).stdout.split():
                left.append(ns)
            else:
                _run(["ip", "netns", "delete", ns], check=False)
    for uts in UTS_DIR.glob("*-*") if UTS_DIR.is_dir() else ():
        tag = uts.name.split("-", 1)[0]
        if tag.isdigit() and not _pid_alive(int(tag)):
            subprocess.run(["umount", str(uts)], capture_output=True, check=False)
            uts.unlink(missing_ok=True)
    for line in _run(["ip", "-o", "link", "show", "type", "bridge"], check=False).stdout.splitlines():
        m = re.match(r"\d+: ctf(\d+)br[:@]", line)
        if m and not _pid_alive(int(m[1])):
            _run(["ip", "link", "delete", f"ctf{m[1]}br"], check=False)
    return left


@contextlib.contextmanager
def fleet(hosts: Sequence[str] = ("host1", "host2", "host3"), subnet: str = SUBNET,
          reach: bool = False) -> Iterator[Fleet]:
    """A central node and one node per host name; all gone after the block.
    ``reach``: give the bridge ``SUBNET.254`` so the caller reaches the nodes
    (one such fleet per subnet at a time)."""
    if os.geteuid() != 0:
        pytest.fail("the fleet harness needs root (ip netns, unshare, core_pattern)")
    if CENTRAL in hosts or len(set(hosts)) != len(hosts) or len(hosts) > 200:
        pytest.fail(f"host names must be distinct, at most 200, and not {CENTRAL!r}: {list(hosts)}")
    sweep_stale()
    tag = str(os.getpid())
    bridge = f"ctf{tag}br"
    made: list = []
    fl = None
    try:
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        made.append(("link", bridge))
        if reach:
            _run(["ip", "addr", "add", f"{subnet}.254/{PREFIX}", "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        central = _make_node(tag, bridge, 0, CENTRAL, f"{subnet}.1", made)
        nodes = {name: _make_node(tag, bridge, i + 1, name, f"{subnet}.{11 + i}", made)
                 for i, name in enumerate(hosts)}
        fl = Fleet(tag=tag, bridge=bridge, central=central, hosts=nodes)
        yield fl
    finally:
        problems = _teardown(fl.procs if fl else [], made)
        if problems:
            pytest.fail("fleet teardown: " + "; ".join(problems))


# ---- core dumps per simulated host ----

def router_script(routes: Mapping[str, Sequence[str]]) -> str:
    """The router: ``$1`` is the crashing task's hostname (%h), the rest the
    handler's specifiers; each route is the handler argv before them."""
    lines = ["#!/bin/sh",
             "# core_pattern router of tests/system/fleetnet.py: $1 is %h, the rest the handler's specifiers",
             'host=$1', 'shift', 'case "$host" in']
    for host, argv in routes.items():
        if not host.replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"not a plain host name: {host!r}")
        lines.append(f"  {shlex.quote(host)}) exec {' '.join(shlex.quote(str(a)) for a in argv)} \"$@\" ;;")
    lines += ["esac", "exit 0  # not a simulated host: the core is not read", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def core_router(fl: Fleet, data_dirs: Mapping[str, Path], pipe_limit: int | None = None) -> Iterator[Path]:
    """core_pattern -> the router, for the block; core_pattern and
    core_pipe_limit (host-setup's unless given) put back afterwards. Each host's crashes go to the real
    handler with that host's data dir (made here if missing, root's, 0700),
    run in that host's UTS namespace as a host's own handler would be (so the
    bundle's ``host`` is the simulated host's name)."""
    from collector.corepattern import SPECIFIERS, pattern_lock, read_pattern, write_pattern
    from collector.hostsetup.render import CORE_PIPE_LIMIT
    from coretriage.services import handler_argv

    routes = {}
    for host, data in data_dirs.items():
        data = Path(data)
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = handler_argv(data)
        assert tuple(argv[-len(SPECIFIERS):]) == SPECIFIERS, argv
        routes[host] = ["/usr/bin/nsenter", f"--uts={fl.hosts[host].uts}", "--", *argv[:-len(SPECIFIERS)]]
    workdir = Path(tempfile.mkdtemp(prefix="ctfr-", dir="/tmp"))  # short: core_pattern holds 127 bytes
    router = workdir / "route"
    router.write_text(router_script(routes))
    router.chmod(0o700)
    pattern = "|" + " ".join((str(router), "%h", *SPECIFIERS))
    limit = Path("/proc/sys/kernel/core_pipe_limit")
    try:
        with pattern_lock():
            before, limit_before = read_pattern(), limit.read_text()
            try:
                write_pattern(pattern)
                limit.write_text(f"{pipe_limit or CORE_PIPE_LIMIT}\n")  # the kernel keeps /proc/PID until the handler is done
                yield router
            finally:
                write_pattern(before)
                limit.write_text(limit_before)
    finally:
        router.unlink(missing_ok=True)
        workdir.rmdir()

