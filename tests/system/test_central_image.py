"""The central side as its image runs it (deploy/Dockerfile, built from this
checkout's wheel): ``db upgrade``, ``web`` and ``worker`` containers against
a real PostgreSQL and Redis on this host. The web container serves the login
page and, after ``coretriage user add`` run inside it, a logged-in group
list; a real kernel crash's bundle, sent through Redis, is analyzed by the
worker container and appears in the web container's API. The Compose file
is checked by ``docker-compose config`` and run by ``docker-compose up``
(PostgreSQL and Redis from Debian's packages in an image that takes the
official images' settings), with a crash analyzed the same way there.

The containers share this host's network (the test dockerd has no bridge)
and the PostgreSQL unix socket directory; the data dir is a host directory
owned by the image's user, mounted as the image's data volume. The worker
runs as that user with what its gdb sandbox needs (user namespaces, a fresh
/proc): ``--security-opt seccomp=unconfined --security-opt
systempaths=unconfined``, and the limits a deployment gives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import crashkit
from centralimage import ROOT, UID, build_image, build_services
from dockerhost import LABEL, docker, dockerd  # noqa: F401 (fixture)
from fleetnet import core_router, fleet
from handlerkit import bundle_of, crash
from pgserver import postgres_server
from redisserver import start_redis
from servicekit import free_port, stop
from waiting import wait_for
from webclient import Client

pytestmark = pytest.mark.timeout(1500)
DATA = "/var/lib/coretriage"  # the image's data volume
PASSWORD = "central-side-password-1"
SIGNATURE_START = ["header_length", "parse_request", "main"]
NO_SANDBOX = """
from pathlib import Path
from analyzer.sandbox import Sandbox, SandboxError, SandboxPolicy
data = Path("/var/lib/coretriage")
try:
    Sandbox(SandboxPolicy.default(data, data / "tmp"), "posixpath:basename").call({})
except SandboxError as exc:
    print(f"SandboxError: {exc}")
"""


@pytest.fixture(scope="module")
def central_image(dockerd, tmp_path_factory):  # noqa: F811
    return build_image(tmp_path_factory.mktemp("central-image"))


@contextlib.contextmanager
def containers():
    """Names of containers started in the block; all removed after it."""
    started: list[str] = []
    try:
        yield started
    finally:
        for name in started:
            docker("rm", "--force", "--volumes", name, check=False)


def logs(name: str) -> str:
    proc = docker("logs", "--tail", "80", name, check=False)
    return (proc.stdout + proc.stderr)[-4000:]


def running(name: str) -> bool:
    proc = docker("inspect", "-f", "{{.State.Running}}", name, check=False)
    return proc.stdout.strip() == "true"


def real_bundle(data: Path, tmp_path: Path) -> Path:
    """A SIGSEGV through the real kernel and pipe handler, into ``data``'s
    spool, on a simulated host (tests/system/fleetnet.py)."""
    prog = crashkit.compile_c("segv.c", tmp_path / "segv")
    with fleet(("edge1",)) as fl, core_router(fl, {"edge1": data}):
        pid, _ = crash(fl.hosts["edge1"].argv([prog, "GET /central HTTP/1.1"]))
        return bundle_of(data / "spool", pid)


def test_the_central_image_runs_web_worker_and_db_upgrade(central_image, tmp_path):
    image = central_image.name
    assert any(w.startswith("coretriage-0.1.0-") for w in central_image.wheels)
    # the image as built: a non-root user, the tools the analysis needs, this checkout's package
    probe = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                   "id -u; for t in gdb gdb-multiarch eu-readelf; do command -v $t; done; coretriage --version").stdout.split()
    assert probe[0] == str(UID) and probe[1:4] == ["/usr/bin/gdb", "/usr/bin/gdb-multiarch", "/usr/bin/eu-readelf"]
    assert probe[-1] == "0.1.0"

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    bundle = real_bundle(data, tmp_path)
    # the data volume belongs to the image's user, as a named volume would
    subprocess.run(["chown", "-R", f"{UID}:{UID}", str(data)], check=True)

    # without what the sandbox needs, Docker's defaults refuse it: one line that says what to grant
    refused = docker("run", "--rm", "--network", "none", "--volume", f"{data}:{DATA}", "--entrypoint", "python",
                     image, "-c", NO_SANDBOX, check=False)
    assert refused.returncode == 0 and len(refused.stdout.strip().splitlines()) == 1, refused.stderr[-2000:]
    assert refused.stdout.startswith("SandboxError: cannot build the analysis sandbox") and \
        "--security-opt seccomp=unconfined --security-opt systempaths=unconfined" in refused.stdout, refused.stdout

    redis_port, web_port = free_port(), free_port()
    redis = start_redis(redis_port)
    try:
        with postgres_server() as pg_url, containers() as started:
            socket_dir = re.search(r"host=([^&]+)", pg_url)[1]
            settings = {"CORETRIAGE_DATABASE_URL": pg_url,
                        "CORETRIAGE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
                        "CORETRIAGE_GDB_TIMEOUT": "120"}
            common = ["--network", "host", "--label", f"{LABEL}=1", "--volume", f"{data}:{DATA}",
                      "--volume", f"{socket_dir}:{socket_dir}",
                      *[arg for k, v in settings.items() for arg in ("--env", f"{k}={v}")]]

            def run_detached(name: str, *args: str) -> str:
                started.append(name)
                docker("run", "--detach", "--name", name, *common, *args)
                return name

            tag = f"{os.getpid()}-{os.urandom(2).hex()}"
            # db upgrade: a one-shot that brings the empty PostgreSQL to the schema
            upgrade = docker("run", "--rm", *common, image, "db", "upgrade", check=False, timeout=300)
            assert upgrade.returncode == 0, upgrade.stderr[-2000:]
            current = docker("run", "--rm", *common, image, "db", "current").stdout
            assert re.search(r"\b\d{4}\b", current), current

            web = run_detached(f"ct-central-web-{tag}", "--cpus", "1", "--memory", "1g",
                               image, "web", "--host", "127.0.0.1", "--port", str(web_port))
            base = f"http://127.0.0.1:{web_port}"
            client = Client(base)

            def login_page():
                if not running(web):
                    pytest.fail(f"the web container stopped:\n{logs(web)}")
                with contextlib.suppress(OSError):
                    page = client.get("/login", timeout=5)
                    return page if page.status == 200 else None

            page = wait_for(login_page, timeout=60, what=f"the login page of the web container:\n{logs(web)}")
            assert 'name="password"' in page.text and 'name="csrf_token"' in page.text

            added = subprocess.run(["docker", "exec", "-i", web, "coretriage", "user", "add", "alice", "--role",
                                    "admin", "--password-stdin"], input=PASSWORD + "\n", capture_output=True,
                                   text=True, timeout=120)
            assert added.returncode == 0, added.stderr
            assert client.login("alice", "wrong-password").status == 200  # the form again
            assert client.login("alice", PASSWORD).status == 302
            groups_page = client.get("/")
            assert groups_page.status == 200 and "alice" in groups_page.text
            assert "No crash groups" in groups_page.text, groups_page.text[:1000]
            token = docker("exec", web, "coretriage", "token", "add", "alice").stdout.strip().splitlines()[-1]

            def api(path: str):
                return Client(base).get(path, headers={"Authorization": f"Bearer {token}"})
            assert api("/api/v1/groups").json()["total"] == 0

            worker = run_detached(f"ct-central-worker-{tag}", "--cpus", "1", "--memory", "2g",
                                  "--memory-swap", "2g", "--security-opt", "seccomp=unconfined",
                                  "--security-opt", "systempaths=unconfined",
                                  image, "worker", "--concurrency", "1")
            worker_host = docker("exec", worker, "python", "-c", "import socket; print(socket.gethostname())"
                                 ).stdout.strip()
            wait_for(lambda: "ready." in logs(worker) or not running(worker), timeout=90,
                     what=f"the worker container to be ready:\n{logs(worker)}")
            assert running(worker), logs(worker)

            # the bundle id through Redis, as a collector with this broker_url sends it
            from celery import Celery

            app = Celery("coretriage", broker=settings["CORETRIAGE_BROKER_URL"])
            app.conf.update(task_serializer="json", accept_content=["json"])
            # the worker's queue_name: its default, coretriage.<its hostname>
            app.send_task("coretriage.analyze_bundle", args=[bundle.name], queue=f"coretriage.{worker_host}")

            def stored():
                if not running(worker):
                    pytest.fail(f"the worker container stopped:\n{logs(worker)}")
                answer = api("/api/v1/groups").json()
                return answer if answer["total"] else None

            groups = wait_for(stored, timeout=180, what=f"the crash in the web container's API; worker:\n"
                                                        f"{logs(worker)}")["groups"]
            assert len(groups) == 1 and groups[0]["count"] == 1, groups
            group = groups[0]
            assert group["signal"] == "SIGSEGV" and group["signature"].split(" | ")[:3] == SIGNATURE_START, group
            assert [h["value"] for h in group["host"]] == ["edge1"]
            detail = api(f"/api/v1/groups/{group['group_id']}")
            assert detail.status == 200 and "parse_request" in json.dumps(detail.json())
            assert "succeeded" in logs(worker) or "crash_id" in logs(worker), logs(worker)
            # the worker analyzed it inside the container: the core moved into the shared data volume
            assert any((data / "cores").rglob("*")), sorted(p.name for p in data.iterdir())
    finally:
        stop(redis)
        shutil.rmtree(data, ignore_errors=True)


def test_the_compose_file_is_valid_and_limits_every_role(tmp_path):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("no docker-compose: apt-get install docker-compose (make test installs it)")
    env = {**os.environ, "POSTGRES_PASSWORD": "compose-test", "CORETRIAGE_IMAGE": "coretriage-test/central:checkout"}
    done = subprocess.run([exe, "-f", str(ROOT / "deploy" / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # read with docker-compose's own Python (Debian's, which has its PyYAML)
    as_json = subprocess.run(["/usr/bin/python3", "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), "
                              "sys.stdout)"], input=done.stdout, capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    config = json.loads(as_json.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker"}
    for name, service in services.items():
        assert float(service["cpus"]) > 0 and service["mem_limit"], name
    assert services["migrate"]["command"] == ["db", "upgrade"] and services["migrate"]["restart"] == "no"
    assert services["web"]["command"][0] == "web" and services["worker"]["command"][0] == "worker"
    for role in ("web", "worker"):
        assert services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[role]["image"] == "coretriage-test/central:checkout"
        env_ = services[role]["environment"]
        assert env_["CORETRIAGE_DATABASE_URL"].startswith("postgresql+psycopg://coretriage:compose-test@postgres/")
        assert env_["CORETRIAGE_BROKER_URL"] == "redis://redis:6379/0"
        assert env_["CORETRIAGE_QUEUE_NAME"] == "coretriage.central"  # one queue for web and workers
    # without the password it refuses, in one line, before anything starts
    bare = {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"}
    refused = subprocess.run([exe, "-f", str(ROOT / "deploy" / "docker-compose.yml"), "config"], capture_output=True,
                             text=True, timeout=120, env=bare, cwd=tmp_path)
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD" in refused.stderr


def test_the_systemd_units_of_the_central_roles_verify(tmp_path):
    """systemd-analyze verify: every key known, every command there (the
    venv's coretriage stands in for /opt/coretriage's)."""
    import configparser
    import sys

    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["coretriage-db-upgrade.service", "coretriage-web.service",
                                       "coretriage-worker.service"]
    command = Path(sys.executable).parent / "coretriage"
    for unit in units:
        text = unit.read_text()
        assert "ExecStart=/opt/coretriage/bin/coretriage " in text, unit.name
        (tmp_path / unit.name).write_text(text.replace("/opt/coretriage/bin/coretriage", str(command)))
    done = subprocess.run(["systemd-analyze", "verify", *[f"./{u.name}" for u in units]], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout

    def service(name: str) -> dict:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read_string((ROOT / "deploy" / "systemd" / name).read_text())
        return dict(parser["Service"])

    upgrade, web, worker = (service(u.name) for u in units)
    assert upgrade["Type"] == "oneshot" and upgrade["ExecStart"].endswith("coretriage db upgrade")
    assert web["ExecStart"].split()[1] == "web" and worker["ExecStart"].split()[1] == "worker"
    assert worker["CPUQuota"] == "150%" and worker["MemoryMax"] == "3G" and int(worker["Nice"]) > 0
    for role in (upgrade, web, worker):
        assert role["User"] == "coretriage" and role["NoNewPrivileges"] == "yes"


def docker_time(text: str) -> float:
    """Docker's RFC 3339 times (nanoseconds, trailing zeros cut) as seconds."""
    from datetime import datetime, timezone

    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp() + float(f"0.{fraction or 0}")


def compose(project: str, env: dict, *args: str, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("no docker-compose: apt-get install docker-compose (make test installs it)")
    done = subprocess.run([exe, "--project-name", project, "--file", str(ROOT / "deploy" / "docker-compose.yml"),
                           *args], capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and done.returncode:
        pytest.fail(f"docker-compose {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
    return done


def test_compose_up_runs_the_central_side(central_image, tmp_path):
    services = build_services(tmp_path)
    project = f"ctc{os.getpid()}"
    port = free_port()
    env = {**os.environ, "CORETRIAGE_IMAGE": central_image.name, "POSTGRES_IMAGE": services,
           "REDIS_IMAGE": services, "POSTGRES_PASSWORD": f"pw-{os.urandom(6).hex()}", "CORETRIAGE_PORT": str(port)}
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    bundle = real_bundle(data, tmp_path)
    subprocess.run(["chown", "-R", f"{UID}:{UID}", str(data)], check=True)
    try:
        compose(project, env, "up", "--detach", "--no-build", timeout=600)

        def container(service: str) -> str:
            return compose(project, env, "ps", "-q", service).stdout.strip()

        def state(service: str) -> dict:
            return json.loads(docker("inspect", "-f", "{{json .State}}", container(service)).stdout)

        # migrate ran once and succeeded before web and worker started
        migrate = state("migrate")
        assert not migrate["Running"] and migrate["ExitCode"] == 0
        assert docker_time(state("web")["StartedAt"]) > docker_time(migrate["FinishedAt"])
        for service, cpus, memory in (("web", 2, 1 << 30), ("worker", 2, 3 << 30), ("migrate", 1, 512 << 20)):
            host = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", container(service)).stdout)
            assert host["NanoCpus"] == cpus * 10**9 and host["Memory"] == memory, (service, host["NanoCpus"])
        for service in ("web", "worker"):
            user = docker("inspect", "-f", "{{.Config.User}}", container(service)).stdout.strip()
            assert user == "coretriage", (service, user)

        base = f"http://127.0.0.1:{port}"

        def login_page():
            with contextlib.suppress(OSError):
                return Client(base).get("/login", timeout=5).status == 200
        wait_for(login_page, timeout=90, what=f"the login page on port {port}:\n"
                                              f"{compose(project, env, 'logs', '--tail', '30', 'web').stdout}")
        compose(project, env, "exec", "-T", "web", "coretriage", "user", "add", "alice", "--role", "admin",
                "--password-stdin", input=PASSWORD + "\n")
        client = Client(base)
        assert client.login("alice", PASSWORD).status == 302
        assert "No crash groups" in client.get("/").text
        token = compose(project, env, "exec", "-T", "web", "coretriage", "token", "add", "alice"
                        ).stdout.strip().splitlines()[-1]

        # the bundle into the shared data volume (as the image's user), its id through Compose's Redis
        packed = subprocess.run(["tar", "-C", str(data), "-c", "."], capture_output=True, check=True).stdout
        unpacked = subprocess.run(["docker", "exec", "-i", container("worker"), "tar", "-x", "-C", DATA,
                                   "--no-same-owner"], input=packed, capture_output=True, timeout=60)
        assert unpacked.returncode == 0, unpacked.stderr
        send = ("from celery import Celery; from coretriage.config import load_config; import sys; "
                "Celery('coretriage', broker='redis://redis:6379/0').send_task("
                "'coretriage.analyze_bundle', args=[sys.argv[1]], queue=load_config().queue_name)")
        compose(project, env, "exec", "-T", "web", "python", "-c", send, bundle.name)

        def stored():
            answer = Client(base).get("/api/v1/groups", headers={"Authorization": f"Bearer {token}"}).json()
            return answer if answer["total"] else None
        groups = wait_for(stored, timeout=180, what="the crash in the API; worker:\n" +
                          compose(project, env, "logs", "--tail", "40", "worker").stdout)["groups"]
        assert len(groups) == 1 and groups[0]["signature"].split(" | ")[:3] == SIGNATURE_START, groups
        assert [h["value"] for h in groups[0]["host"]] == ["edge1"]
    finally:
        down = compose(project, env, "down", "--volumes", "--remove-orphans", check=False, timeout=300)
        left = docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}").stdout
        shutil.rmtree(data, ignore_errors=True)
        assert down.returncode == 0 and not left.strip(), down.stderr[-2000:]
