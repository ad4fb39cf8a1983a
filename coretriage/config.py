"""Settings, from (lowest to highest) built-in defaults, ``<data-dir>/coretriage.toml``
and ``CORETRIAGE_*`` environment variables. Built on demand, never at import.
Loading settings creates nothing; the data dir is made, checked and kept
private by ``coretriage.datadir`` when a command, the store or the web UI
opens it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
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
    dump_dirs: tuple[str, ...] = ()  # directories a file core_pattern or a volume writes cores to
    gdb_timeout: float = 120.0
    gdb_memory: int = 4 << 30
    show_literals: bool = False  # SQL literals in PostgreSQL context

    @property
    def cores_dir(self) -> Path:
        return self.data_dir / "cores"

    @property
    def spool_dir(self) -> Path:
        """Where the kernel's pipe handler leaves bundles."""
        return self.data_dir / "spool"

    @property
    def files_dir(self) -> Path:
        """Executables and libraries, stored once per build-id."""
        return self.data_dir / "files"

    @property
    def rules_dir(self) -> Path:
        return self.data_dir / "rules"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

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
        for name in ("gdb_timeout",):
            if name in values:
                values[name] = float(values[name])
        if "gdb_memory" in values:
            values["gdb_memory"] = int(values["gdb_memory"])
        if isinstance(values.get("dump_dirs"), str):
            values["dump_dirs"] = tuple(d for d in values["dump_dirs"].split(":") if d)
        elif "dump_dirs" in values:
            values["dump_dirs"] = tuple(values["dump_dirs"])
        if isinstance(values.get("show_literals"), str):
            values["show_literals"] = values["show_literals"].lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise ConfigError(f"bad setting: {exc}") from None
    values.pop("data_dir", None)
    return Config(data_dir=data_dir.absolute(), **values)
