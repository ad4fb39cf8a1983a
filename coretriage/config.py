"""Settings, from (lowest to highest) built-in defaults, ``<data-dir>/coretriage.toml``
and ``CORETRIAGE_*`` environment variables. Built on demand, never at import.
Loading settings creates nothing; the data dir is made, checked and kept
private by ``coretriage.datadir`` when a command, the store or the web UI
opens it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from analyzer.errors import CoretriageError

DEFAULT_DATA_DIR = Path("/var/lib/coretriage")


class ConfigError(CoretriageError):
    """A bad coretriage.toml or CORETRIAGE_* variable."""


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str  # any SQLAlchemy URL; SQLite in the data dir by default
    broker_url: str | None = None  # Redis for Celery; None analyzes in-process
    # the Celery queue the collector sends to and `coretriage worker` consumes: this host's by
    # default (uname's node name is gethostname() without importing socket, 5 ms of the CLI's
    # start-up); one name for a central deployment whose workers on any machine take every crash
    queue_name: str = field(default_factory=lambda: f"coretriage.{os.uname().nodename}")
    worker_concurrency: int = 2  # analyses one `coretriage worker` runs at a time (each one gdb)
    dump_dirs: tuple[str, ...] = ()  # directories a file core_pattern or a volume writes cores to
    gdb_timeout: float = 120.0
    gdb_memory: int = 4 << 30
    show_literals: bool = False  # SQL literals in PostgreSQL context
    python_locals: bool = False  # Python frames' arguments and locals (masked; admins only)
    # -- the web UI (webui/) --
    secure_cookies: bool = False  # always mark cookies Secure (they are anyway on requests that came over HTTPS)
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-For/-Proto are believed
    session_idle: float = 2 * 3600  # seconds without a request before a login ends
    session_lifetime: float = 24 * 3600  # seconds after which a login ends whatever happens
    login_failures_per_user: int = 5  # failed logins per user name in login_window, then 429
    login_failures_per_address: int = 20  # failed logins per client address in login_window, then 429
    login_window: float = 15 * 60  # seconds
    token_days: int = 90  # an API token's life when `token add` is not given --days
    # -- alerts and metrics (coretriage.alerts, coretriage.notify, webui/metrics.py) --
    public_url: str | None = None  # the web UI's address, for links in alerts
    smtp_url: str | None = None  # smtp://[user:password@]host[:port]; STARTTLS when offered (required with a password)
    smtp_from: str = "coretriage@localhost"
    smtp_ca: str | None = None  # a CA bundle (PEM) for an SMTP server whose certificate a private CA signed
    alert_retries: int = 8  # tries of one alert (backoff 2^n s, at most 10 min) before it is given up
    spike_window: float = 600.0  # seconds
    spike_factor: float = 10.0  # crashes in a window over the group's trailing average per window
    spike_minimum: int = 10  # crashes in a window, at least, for a spike
    metrics_token: str | None = None  # when set, GET /metrics needs "Authorization: Bearer <it>"
    metrics_executables: int = 100  # executables with a label of their own in coretriage_crashes_total
    # -- a host that uploads to a central coretriage (collector.upload) --
    server_url: str | None = None  # the central server; set, `collector run` uploads instead of analyzing
    server_token: str | None = field(default=None, repr=False)  # this host's token (`coretriage host add`)
    server_ca: str | None = None  # a CA bundle (PEM) for a server whose certificate a private CA signed
    upload_bandwidth: int = 0  # bytes/s for all uploads together; 0 = unlimited
    upload_concurrency: int = 2  # bundles uploaded at once
    upload_max_core: int = 1 << 30  # compressed core.zst bytes; a bigger core travels as its stack-only core
    heartbeat_interval: float = 60.0  # seconds between a host's heartbeats
    # -- a worker without the central data dir (coretriage.remote): it fetches each bundle, and the
    # files it lacks, from the central web server, keeping the files in its own DATA/files by hash --
    central_url: str | None = None  # the central web server; unset, the worker reads the shared data dir
    central_ca: str | None = None  # a CA bundle (PEM) for a central server whose certificate a private CA signed
    worker_token: str | None = field(default=None, repr=False)  # the workers' credential for /worker/v1; the
    # central server's own setting turns that API on, and every remote worker carries the same
    worker_cache_size: int = 2 << 30  # bytes of fetched files a remote worker keeps; the least recently used go
    # -- the central side's ingest API (webui/ingest.py, coretriage.receive) --
    ingest_max_file: int = 2 << 30  # bytes of one captured file
    ingest_max_core: int = 64 << 30  # uncompressed bytes of one core, whatever its meta says
    ingest_min_free: int = 256 << 20  # bytes the data dir keeps free; below, uploads answer 507
    ingest_backlog: int = 1000  # bundles waiting for the analysis before commits answer 503
    # -- symbols (coretriage.symbols, coretriage.debuginfod) --
    debuginfod_urls: str | None = None  # servers, space-separated, or "auto"; unset: $DEBUGINFOD_URLS
    debuginfod_timeout: float = 10.0  # seconds one analysis may spend fetching, all servers together
    symbol_cache_size: int = 2 << 30  # bytes of DATA/symbols before fetched files are evicted
    symbol_miss_ttl: float = 86400.0  # seconds a build-id a server did not have is not asked for again

    @property
    def cores_dir(self) -> Path:
        return self.data_dir / "cores"

    @property
    def spool_dir(self) -> Path:
        """Where the kernel's pipe handler leaves bundles."""
        return self.data_dir / "spool"

    @property
    def files_dir(self) -> Path:
        """Executables and libraries, stored once per content: ``sha256/<hex>``
        (``<build-id>/<name>`` in data dirs from before)."""
        return self.data_dir / "files"

    @property
    def rules_dir(self) -> Path:
        return self.data_dir / "rules"

    @property
    def symbols_dir(self) -> Path:
        """The local symbol store (``coretriage.symbols``): gdb's .build-id layout."""
        return self.data_dir / "symbols"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def spike_policy(self):
        from coretriage.alerts import SpikePolicy

        return SpikePolicy(window=self.spike_window, factor=self.spike_factor, minimum=self.spike_minimum)

    def gdb_budget(self):
        """What one analysis's gdb may spend."""
        from analyzer.gdb import GdbBudget

        return GdbBudget(timeout=self.gdb_timeout, memory=self.gdb_memory)


def default_data_dir() -> Path:
    env = os.environ.get("CORETRIAGE_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return DEFAULT_DATA_DIR
    return Path.home() / ".local/share/coretriage"


def load_config(data_dir: Path | str | None = None) -> Config:
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    values: dict = {}
    path = data_dir / "coretriage.toml"
    if path.is_file():
        try:
            values.update(tomllib.loads(path.read_text()))
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    known = {f.name: f for f in fields(Config)}
    for name in known:
        env = os.environ.get(f"CORETRIAGE_{name.upper()}")
        if env is not None and name != "data_dir":
            values[name] = env
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(sorted(unknown))}")
    values.setdefault("database_url", f"sqlite:///{data_dir.absolute() / 'coretriage.db'}")
    try:
        for name, value in list(values.items()):
            kind = known[name].type  # a string: the module uses postponed annotations
            if kind in _NUMBERS:
                values[name] = _number(name, value, _NUMBERS[kind])
            elif kind == "bool":
                values[name] = _bool(name, value)
        if isinstance(values.get("dump_dirs"), str):
            values["dump_dirs"] = tuple(d for d in values["dump_dirs"].split(":") if d)
        elif "dump_dirs" in values:
            values["dump_dirs"] = tuple(values["dump_dirs"])
        _check_queue(values.get("queue_name"))
        if values.get("worker_concurrency") == 0:
            raise ValueError("worker_concurrency must be at least 1")
        if values.get("worker_token") is not None and len(str(values["worker_token"])) < 24:
            raise ValueError("worker_token must have at least 24 characters "
                             "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    except ValueError as exc:
        raise ConfigError(f"bad setting: {exc}") from None
    values.pop("data_dir", None)
    return Config(data_dir=data_dir.absolute(), **values)


_NUMBERS = {"int": int, "float": float}


def _number(name: str, value, kind) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return number


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def _check_queue(name) -> None:
    """A queue name is a Redis key and a Celery routing key: printable, no
    spaces, not empty."""
    if name is None:
        return
    if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable() or " " in name:
        raise ValueError(f"queue_name must be a non-empty name without spaces, not {name!r}")
