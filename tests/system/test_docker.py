"""A crash inside a Docker container, through the real kernel: Debian's HAProxy
in a container (its own Debian root, debootstrap'ed and imported, not the
host's files) segfaults in a buggy Lua module while serving a request. The
pipe handler must keep the container's own executable and libraries (read
through /proc/PID/root, bind mounts included), the collector must name the
container and its image from Docker, and the analysis must symbolize the
crash with the container's builds, never the host's."""

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from analyzer.model import Analysis
from coretriage.store import Store
from collector.corepattern import read_pattern
from collector.watch import Collector
from coretriage.wiring import Wiring
from coretriage.config import load_config
from dockerhost import (IMAGE, MOUNT, cli, collector_installed, docker, dockerd,  # noqa: F401 (fixtures)
                        haproxy_container, haproxy_image)
from recipes import haproxy

SIGNATURE_START = ("route_auth_header", "buggy_parse_path")
COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.service": "edge"}
CRASH_TIMEOUT = 180.0


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def under(path: str | None, root: Path) -> bool:
    return path is not None and Path(path).is_relative_to(root)


def test_haproxy_container_crash_symbolized_with_the_containers_files(
        dockerd, haproxy_image, collector_installed, tmp_path):  # noqa: F811 (fixtures)
    data = collector_installed
    assert read_pattern().startswith("|") and "collector.handler" in read_pattern()
    config = load_config(data)
    store = Store(config.database_url)
    t0 = time.monotonic()
    stop = threading.Event()
    collector = Collector(config.spool_dir, Wiring(config).submit(), rescan=0.5)
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with haproxy_container(IMAGE, tmp_path / "ct", labels=COMPOSE) as ct:
            ct.wait_listening()
            reply = haproxy.send_request(ct.port, haproxy.URI)
            exit_code = ct.wait_exit(timeout=haproxy.DEATH_TIMEOUT)
            if exit_code != 128 + 11:  # docker-init reports its child's SIGSEGV as 139
                pytest.fail(f"haproxy in {ct.name} exited {exit_code}, not by SIGSEGV "
                            f"(reply {reply[:200]!r}):\n{ct.logs()}")
            deadline = time.monotonic() + CRASH_TIMEOUT
            while time.monotonic() < deadline and not store.groups():
                time.sleep(0.2)
            groups = store.groups()
            if not groups:
                bundles = sorted(p.name for p in config.spool_dir.iterdir()) if config.spool_dir.is_dir() else []
                pytest.fail(f"no crash stored {CRASH_TIMEOUT:.0f} s after haproxy died in {ct.name}; "
                            f"spool {config.spool_dir}: {bundles}")
            crash_seconds = time.monotonic() - t0
            # what the container really had, to compare the bundle's copies with
            container_exe = tmp_path / "haproxy.from-container"
            docker("cp", f"{ct.id}:/usr/sbin/haproxy", str(container_exe))
            version = docker("run", "--rm", "--network", "none", IMAGE,
                             "dpkg-query", "-W", "-f", "${Version}", "haproxy").stdout.strip()
            container_id, container_name = ct.id, ct.name
    finally:
        stop.set()
        thread.join(timeout=30)

    assert len(groups) == 1 and groups[0].count == 1, [(g.ref, g.signature) for g in groups]
    (crash,) = store.crashes_of(groups[0].id)

    # the container, from the pipe handler (cgroup) and from Docker (enrichment)
    meta = crash.meta
    assert meta["container_id"] == container_id and meta["container_runtime"] == "docker"
    assert meta["container_name"] == container_name and crash.container == container_name
    assert meta["image"] == IMAGE and crash.image == IMAGE
    assert meta["image_id"] == haproxy_image.id
    assert meta["compose_project"] == "shop" and meta["compose_service"] == "edge"
    assert meta["init"] is True and meta["restart_count"] == 0
    assert meta["exe"] == "/usr/sbin/haproxy"
    assert meta["cmdline"] == ["/usr/sbin/haproxy", "-db", "-f", f"{MOUNT}/haproxy.cfg"]
    assert meta["ns_pid"] not in (None, meta["pid"]), "haproxy runs in the container's pid namespace"
    assert meta["host"] and meta["core_file"] and not meta["dropped"]
    not_kept = [p for p in meta["problems"] if "mapped file" in p]
    if not_kept:
        pytest.fail(f"the pipe handler did not keep {len(not_kept)} of the container's mapped files "
                    f"(read through /proc/PID/root): {not_kept}")

    # symbolized with the container's own files, kept in the bundle's root/
    a = Analysis.from_dict(crash.analysis)
    assert a.signal.name == "SIGSEGV" and a.executable == "/usr/sbin/haproxy"
    modules = {m.path: m for m in a.modules}
    exe = modules["/usr/sbin/haproxy"]
    found = Path(exe.found_at or "")
    if not under(exe.found_at, config.spool_dir):
        pytest.fail(f"/usr/sbin/haproxy was read from {exe.found_at}, not from the bundle in {config.spool_dir}")
    bundle = config.spool_dir / found.relative_to(config.spool_dir).parts[0]
    assert found == bundle / "root/usr/sbin/haproxy"
    assert sha256(found) == sha256(container_exe), "the bundle's haproxy is not the container's"
    assert crash.sysroot == str(bundle / "root")
    # the bind-mounted module was reached inside the container's mounts
    module = modules[f"{MOUNT}/lua/buggy.so"]
    assert module.found_at == str(bundle / "root" / MOUNT.lstrip("/") / "lua/buggy.so")
    assert sha256(module.found_at) == sha256(ct.etc / "lua/buggy.so")
    from_host = [m.path for m in a.modules if m.found_at and not under(m.found_at, bundle / "root")]
    assert not from_host, f"modules read from the host, not the container: {from_host}"
    assert any(p.endswith("/liblua5.3.so.0.0.0") for p in modules), sorted(modules)

    sig = crash.signature
    assert tuple(sig["frames"][:2]) == SIGNATURE_START, sig["text"]
    names = [f.function for f in a.crashing_thread.frames]
    if not {"process_stream", "lua_resume"} <= set(names):  # exported by haproxy and liblua (stripped)
        pytest.fail(f"haproxy's and liblua's exported functions are not named: gdb did not load the "
                    f"container's libraries from {bundle / 'root'}; crashing thread: {names[:20]}")
    ctx = dict(a.context[0].fields)
    assert ctx["version"] == version, ctx  # read from the container's haproxy, not the host's
    assert "USE_LUA=1" in ctx["build_options"]

    # and the CLI sees the group
    listed = json.loads(cli(data, "list", "--json").stdout)
    assert [(g["group_id"], g["count"], g["executable"], g["signal"]) for g in listed] == \
        [(groups[0].ref, 1, "/usr/sbin/haproxy", "SIGSEGV")]
    assert listed[0]["signature"].startswith(" | ".join(SIGNATURE_START) + " | ")
    shown = json.loads(cli(data, "show", groups[0].ref, "--json").stdout)
    assert [(c["container"], c["image"]) for c in shown["crashes"]] == [(container_name, IMAGE)]

    # the container is gone (haproxy_container removed it)
    assert docker("inspect", container_id, check=False).returncode != 0
    started = f"started by the session in {dockerd.start_seconds:.1f} s" if dockerd.started else "already running"
    image = f"built in {haproxy_image.build_seconds:.1f} s" if haproxy_image.built else "cached"
    print(f"\ndockerd: {started}; image {IMAGE}: {image}; container start to crash stored: {crash_seconds:.1f} s")
