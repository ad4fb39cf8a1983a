"""Docker on the test host, for the container system tests.

- ``dockerd`` (session): a Docker daemon that answers ``docker info``. If
  none does, one is started here (no iptables, no bridge: the tests use
  ``--network host``) with its log in the session's temp dir, and stopped,
  with the containerd it spawned, at the end of the session. A daemon that
  was already running is left alone.
- ``haproxy_image`` (session): ``coretriage-test/haproxy:bookworm``, built by
  sample-cores/images/build_haproxy_image.py (debootstrap + docker import, no
  registry) only when it is missing.
- ``collector_installed``: ``coretriage host-setup install`` into a short
  data dir under /tmp, holding the core_pattern lock for the whole test, and
  put back exactly as tests/system/test_end_to_end.py's ``installed`` does.
- ``haproxy_container``: Debian's HAProxy in that image with the buggy Lua
  module, the Lua script and haproxy.cfg bind-mounted read-only at /etc/ct;
  removed at the end of the block, whatever happened.

Everything fails loudly (pytest.fail) with the daemon's or the container's
log; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import crashkit

ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGE = ROOT / "sample-cores" / "images" / "build_haproxy_image.py"
IMAGE = "coretriage-test/haproxy:bookworm"
SOCKET = "/var/run/docker.sock"
DOCKERD_ARGS = (f"--host=unix://{SOCKET}", "--iptables=false", "--ip-masq=false", "--bridge=none")
DOCKERD_START_TIMEOUT = 60.0
DOCKERD_STOP_TIMEOUT = 30.0
IMAGE_BUILD_TIMEOUT = 1800.0
MOUNT = "/etc/ct"  # where the container sees the bind-mounted module, script and config
LABEL = "coretriage-test"  # on every container the tests start


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:] + f"\n(full log: {path})"
    except OSError:
        return f"(no log at {path})"


def docker_cli() -> str:
    path = shutil.which("docker")
    if path is None:
        pytest.fail("no docker CLI: apt-get install docker.io (make test installs it)")
    return path


def docker(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    proc = subprocess.run([docker_cli(), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def daemon_answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ---- the daemon ----

@dataclass
class Dockerd:
    started: bool  # by this session (and so stopped by it)
    pid: int | None = None
    log: Path | None = None
    start_seconds: float = 0.0


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes, only its parent can reap it
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running_dockerd(log_dir: Path):
    if daemon_answers():
        yield Dockerd(started=False)
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.fail("docker info does not answer and there is no dockerd to start: "
                    "apt-get install docker.io (make test installs it)")
    if Path(SOCKET).exists():
        Path(SOCKET).unlink()  # a stale socket from a daemon that died
    log = log_dir / "dockerd.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([dockerd, *DOCKERD_ARGS], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    state = Dockerd(started=True, pid=proc.pid, log=log)
    try:
        deadline = time.monotonic() + DOCKERD_START_TIMEOUT
        while not daemon_answers():
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited {proc.returncode} while starting:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"dockerd did not answer docker info within {DOCKERD_START_TIMEOUT:.0f} s:\n{tail(log)}")
            time.sleep(0.2)
        state.start_seconds = time.monotonic() - t0
        yield state
    finally:
        children = _children(proc.pid)  # its containerd (and shims, if a container was left)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=DOCKERD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"dockerd ignored SIGTERM for {DOCKERD_STOP_TIMEOUT:.0f} s and was killed:\n{tail(log)}")
        deadline = time.monotonic() + 15
        while (left := [p for p in children if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            pytest.fail(f"processes started by dockerd outlived it (killed): {left}\n{tail(log)}")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the Docker tests need root (dockerd, core_pattern)")
    with running_dockerd(tmp_path_factory.mktemp("dockerd")) as state:
        yield state
    if state.started and daemon_answers():
        pytest.fail("dockerd started by this session still answers after it was stopped")


# ---- the image ----

@dataclass(frozen=True)
class Image:
    name: str
    id: str
    built: bool  # False: it was there already
    build_seconds: float = 0.0
    log: Path | None = None


def image_id(name: str) -> str | None:
    proc = docker("image", "inspect", "-f", "{{.Id}}", name, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def ensure_image(log_dir: Path, name: str = IMAGE) -> Image:
    existing = image_id(name)
    if existing:
        return Image(name, existing, built=False)
    log = log_dir / "build-image.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        try:
            proc = subprocess.run([sys.executable, str(BUILD_IMAGE), "--name", name, "--docker", docker_cli()],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=IMAGE_BUILD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"building {name} took over {IMAGE_BUILD_TIMEOUT:.0f} s:\n{tail(log)}")
    if proc.returncode != 0:
        pytest.fail(f"building {name} failed ({BUILD_IMAGE.name} exited {proc.returncode}):\n{tail(log)}")
    made = image_id(name)
    if not made:
        pytest.fail(f"{BUILD_IMAGE.name} succeeded but there is no image {name}:\n{tail(log)}")
    return Image(name, made, built=True, build_seconds=time.monotonic() - t0, log=log)


@pytest.fixture(scope="session")
def haproxy_image(dockerd, tmp_path_factory):
    return ensure_image(tmp_path_factory.mktemp("image"))


# ---- the collector on this host: shared with test_end_to_end ----

from hostfixtures import cli, collector_installed  # noqa: E402,F401  (test_docker imports them from here)


# ---- HAProxy in a container ----

@dataclass
class Container:
    id: str
    name: str
    port: int
    etc: Path  # the host directory mounted at MOUNT

    def state(self) -> dict:
        import json

        return json.loads(docker("inspect", "-f", "{{json .State}}", self.id).stdout)

    def logs(self) -> str:
        proc = docker("logs", "--tail", "60", self.id, check=False)
        return (proc.stdout + proc.stderr)[-3000:]

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state.get("Running"):
                pytest.fail(f"container {self.name} stopped before listening on 127.0.0.1:{self.port} "
                            f"(exit code {state.get('ExitCode')}, {state.get('Error') or 'no error'}):\n"
                            f"{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"haproxy in {self.name} not listening on 127.0.0.1:{self.port} after {timeout:.0f} s:\n"
                    f"{self.logs()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            proc = docker("wait", self.id, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"container {self.name} still running {timeout:.0f} s later:\n{self.logs()}")
        return int(proc.stdout.strip())


def haproxy_files(etc: Path, port: int) -> None:
    """The buggy module (built here, against the host's Lua 5.3 headers: the
    image has the same Debian release's liblua5.3-0), the Lua script and a
    haproxy.cfg naming them by their paths in the container."""
    from recipes import haproxy

    if not (haproxy.LUA_INCLUDE / "lua.h").exists():
        pytest.fail(f"missing {haproxy.LUA_INCLUDE}/lua.h (apt-get install liblua5.3-dev)")
    crashkit.need("gcc")
    try:
        crashkit.compile_c("haproxy_buggy.c", etc / "lua" / "buggy.so",
                           flags=("-shared", "-fPIC", f"-I{haproxy.LUA_INCLUDE}"))
    except subprocess.CalledProcessError as e:
        pytest.fail(f"building buggy.so failed: {e.stderr.decode(errors='replace')}")
    shutil.copyfile(crashkit.SRC / "haproxy_crash.lua", etc / "haproxy_crash.lua")
    config = (crashkit.SRC / "haproxy.cfg.in").read_text()
    for key, value in {"@MODULE_DIR@": f"{MOUNT}/lua", "@LUA_FILE@": f"{MOUNT}/haproxy_crash.lua",
                       "@PORT@": port}.items():
        config = config.replace(key, str(value))
    (etc / "haproxy.cfg").write_text(config)


@contextlib.contextmanager
def haproxy_container(image: str, workdir: Path, labels: dict[str, str] | None = None):
    """HAProxy as the crashing service of a container: ``--init`` (docker-init
    is PID 1, haproxy its child), unlimited cores, the host's network."""
    from servicekit import free_port

    etc = workdir / "etc"
    etc.mkdir(parents=True)
    port = free_port()
    haproxy_files(etc, port)
    name = f"ct-haproxy-{os.getpid()}-{os.urandom(3).hex()}"
    label_args = [arg for k, v in {LABEL: "1", **(labels or {})}.items() for arg in ("--label", f"{k}={v}")]
    run = docker("run", "--detach", "--name", name, "--init", "--ulimit", "core=-1", "--network", "host",
                 *label_args, "--volume", f"{etc}:{MOUNT}:ro",
                 image, "/usr/sbin/haproxy", "-db", "-f", f"{MOUNT}/haproxy.cfg", check=False)
    if run.returncode != 0:
        docker("rm", "--force", name, check=False)
        pytest.fail(f"docker run {image} failed: {run.stderr.strip()[-2000:]}")
    container = Container(id=run.stdout.strip(), name=name, port=port, etc=etc)
    try:
        yield container
    finally:
        docker("rm", "--force", "--volumes", container.id, check=False)
        if docker("inspect", container.id, check=False).returncode == 0:
            pytest.fail(f"container {name} is still there after docker rm --force")
