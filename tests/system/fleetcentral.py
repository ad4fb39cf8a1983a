"""The central coretriage of a simulated fleet (``fleetnet.fleet``): the
web/ingest server, Celery workers and Redis, each a process in the central
namespace, PostgreSQL over its unix socket; and the hosts' uploading
collectors. tests/system/test_fleet.py and bench/fleet.py run it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from uploadkit import add_host, host_settings
from waiting import wait_for
from webserver import cli

WEB_PORT = 8080
REDIS_PORT = 6379  # inside the central namespace: nothing else listens there
PYTHON = [sys.executable, "-m", "coretriage.cli"]


class Central:
    """The central roles, each a process in the central namespace."""

    def __init__(self, fl, data: Path, logs: Path):
        self.fl, self.data, self.logs = fl, data, logs
        self.web = self.redis = None
        self.workers: dict[str, object] = {}
        self.tokens: dict[str, str] = {}

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

    def add_hosts(self, root: Path, names, collector_toml: str = "", **settings) -> dict[str, Path]:
        """{host: its data dir (``root/<host>``)}: each host registered here
        (its token in ``tokens``) and set to upload to the central web server;
        ``collector_toml`` is written as the host's collector.toml."""
        hosts = {}
        for name in names:
            self.tokens[name] = add_host(self.data, name)
            data = root / name
            data.mkdir(mode=0o700)
            host_settings(data, f"http://{self.fl.central.address}:{WEB_PORT}", self.tokens[name], **settings)
            if collector_toml:
                (data / "collector.toml").write_text(collector_toml)
            hosts[name] = data
        return hosts

    def start_collectors(self, hosts: dict[str, Path]) -> None:
        """Each host's collector, in the host's namespaces (``core_router``
        routes its crashes to it)."""
        for name, data in hosts.items():
            with self._log(f"collector-{name}") as out:
                self.fl.popen(name, [*PYTHON, "--data-dir", str(data), "collector", "run"], stdout=out, stderr=out)

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
