"""Many hosts, one place (issue 9), on this machine for real: a central
coretriage (the web/ingest server and two Celery workers in the ``central``
network namespace, Redis there too, PostgreSQL over its unix socket) and
three simulated hosts, each in its own network and UTS namespace with its own
data dir, spool and uploading collector (``tests/system/fleetnet.py``). The
kernel's core_pattern routes each host's crashes to the real handler with
that host's data dir.

One fleet runs every step, and every step counts the crash records exactly:

- a crash on each host appears centrally under the host's registered name;
- a worker killed with kill -9 while it analyzes: recorded once, by the other;
- the central web/ingest server stopped while hosts crash, then started;
- Redis stopped for 20 s while hosts crash.

(kill -9 of a collector mid-upload and a full central disk are in
tests/system/test_upload.py, on one host.)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from fleetnet import fleet, core_router
from pgserver import postgres_server
from uploadkit import add_host, host_settings
from proctree import gdb_of
from waiting import wait_for
from webclient import Client
from webserver import add_user, cli

HOSTS = ("host1", "host2", "host3")
WEB_PORT = 8080
REDIS_PORT = 6379  # inside the central namespace: nothing else listens there
PYTHON = [sys.executable, "-m", "coretriage.cli"]


def rows(url: str) -> list[tuple]:
    """(bundle id, host, signature, crash id) of every central crash."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            found = db.execute(sa.text("SELECT c.bundle_id, c.host, g.signature, c.id FROM crashes c "
                                       "JOIN groups g ON g.id = c.group_id ORDER BY c.crashed_at")).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in found]


class Central:
    """The central roles, each a process in the central namespace."""

    def __init__(self, fl, data: Path, logs: Path):
        self.fl, self.data, self.logs = fl, data, logs
        self.web = self.redis = None
        self.workers: dict[str, object] = {}

    @classmethod
    def make(cls, fl, root: Path, database_url: str, settings: str = "") -> "Central":
        """Its data dir (``root/central``: PostgreSQL, the Redis of the central
        namespace, one queue for web and workers), migrated; logs in ``root/logs``."""
        data, logs = root / "central", root / "logs"
        data.mkdir(mode=0o700)
        logs.mkdir()
        (data / "coretriage.toml").write_text(
            f'database_url = "{database_url}"\nbroker_url = "redis://127.0.0.1:{REDIS_PORT}/0"\n'
            f'queue_name = "coretriage.central"\n{settings}')
        cli(data, "db", "upgrade")
        return cls(fl, data, logs)

    def _log(self, name: str):
        return open(self.logs / f"{name}.log", "ab")

    def start_redis(self):
        with self._log("redis") as out:
            self.redis = self.fl.popen("central", ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                                                   "--save", "", "--appendonly", "no"], stdout=out, stderr=out)
        wait_for(lambda: self.fl.run("central", ["redis-cli", "-p", str(REDIS_PORT), "ping"], check=False)
                 .stdout.strip() == "PONG", "redis in the central namespace", 30)

    def start_web(self):
        with self._log("web") as out:
            self.web = self.fl.popen("central", [*PYTHON, "--data-dir", str(self.data), "web", "--host",
                                                 self.fl.central.address, "--port", str(WEB_PORT)],
                                     stdout=out, stderr=out)
        wait_for(lambda: self.fl.run("central", ["curl", "-sf", "-o", "/dev/null",
                                                 f"http://{self.fl.central.address}:{WEB_PORT}/login"],
                                     check=False).returncode == 0, "the central web server", 60)

    def start_worker(self, name: str):
        with self._log(f"worker-{name}") as out:
            self.workers[name] = self.fl.popen("central", [*PYTHON, "--data-dir", str(self.data), "worker",
                                                           "--concurrency", "1"], stdout=out, stderr=out)

    @staticmethod
    def stop(proc, sig=signal.SIGTERM):
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except Exception:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def crasher(samples):
    """The segv sample program (built here, run inside a host's namespaces)."""
    return samples("segv").exe


def test_three_hosts_one_central_every_crash_exactly_once(tmp_path, crasher):
    with postgres_server() as url, fleet(HOSTS, reach=True) as fl:
        c = Central.make(fl, tmp_path, url)
        central, logs = c.data, c.logs
        add_user(central, "ops", "admin", "fleet-admin-password")
        tokens = {h: add_host(central, h) for h in HOSTS}
        c.start_redis()
        c.start_web()
        c.start_worker("a")
        c.start_worker("b")

        hosts = {}
        for h in HOSTS:
            data = tmp_path / h
            data.mkdir(mode=0o700)
            host_settings(data, f"http://{fl.central.address}:{WEB_PORT}", tokens[h], heartbeat_interval=2)
            hosts[h] = data
        with core_router(fl, hosts):
            for h, data in hosts.items():
                with open(logs / f"collector-{h}.log", "ab") as out:
                    fl.popen(h, [*PYTHON, "--data-dir", str(data), "collector", "run"], stdout=out, stderr=out)

            def crash(host: str, n: int = 1) -> None:
                for i in range(n):
                    done = fl.run(host, [crasher, f"GET /{host}/{i}"], check=False)
                    assert done.returncode == -signal.SIGSEGV or done.returncode == 128 + signal.SIGSEGV, done

            def recorded(n: int, what: str, timeout: float = 120.0) -> list[tuple]:
                wait_for(lambda: len(rows(url)) >= n, what, timeout)
                time.sleep(3)  # anything recorded twice would show by now
                found = rows(url)
                assert len(found) == n and len({r[0] for r in found}) == n, found
                return found

            # 1. a crash on each host, under each host's registered name
            for h in HOSTS:
                crash(h)
            found = recorded(3, "a crash from every host")
            assert sorted(r[1] for r in found) == sorted(HOSTS)
            assert {r[2] for r in found} == {"strlen | header_length | parse_request | main"}

            admin = Client(f"http://{fl.central.address}:{WEB_PORT}")
            assert admin.login("ops", "fleet-admin-password").status == 302
            groups = admin.get("/api/v1/groups")
            assert groups.status == 200 and groups.json()["groups"][0]["count"] == 3
            hosts_page = admin.get("/hosts").text
            assert all(h in hosts_page for h in HOSTS)
            page = admin.get(f"/crashes/{found[0][3]}")
            assert page.status == 200 and found[0][1] in page.text  # the host's registered name
            core = admin.get(f"/crashes/{found[0][3]}/core")
            assert core.status == 200 and len(core.body) > 4096  # the core of a crash on another host
            stranger = Client(f"http://{fl.central.address}:{WEB_PORT}")
            assert stranger.get("/api/v1/groups", headers={"Authorization": f"Bearer {tokens['host1']}"}
                                ).status in (401, 403)

            # 2. kill -9 a worker while it analyzes: the other records the crash, once
            c.stop(c.workers.pop("b"))
            crash("host2")
            gdb = wait_for(lambda: gdb_of(c.workers["a"].pid), "worker a's gdb", 60)
            os.kill(gdb, signal.SIGSTOP)
            c.start_worker("b")
            os.killpg(c.workers["a"].pid, signal.SIGKILL)
            killed = time.monotonic()
            c.workers.pop("a").wait()
            recorded(4, "the crash whose worker was killed", 90)
            assert time.monotonic() - killed < 60 + 3
            c.start_worker("a")

            # 3. the central web/ingest server down while hosts crash, then back
            c.stop(c.web)
            for h in HOSTS:
                crash(h)
            time.sleep(5)
            assert len(rows(url)) == 4  # nothing can arrive: the hosts keep their bundles
            c.start_web()
            recorded(7, "the crashes made while the server was down")

            # 4. Redis down for 20 s while hosts crash
            c.stop(c.redis)
            for h in HOSTS:
                crash(h)
            time.sleep(20)
            c.start_redis()
            found = recorded(10, "the crashes made while Redis was down", 180)
            assert sorted(r[1] for r in found).count("host1") == 3
