"""``<data-dir>/host-setup.json``: everything install changed, with what was there before.

A second install keeps the first record's previous values, so uninstall always
goes back to the host as it was before coretriage touched it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from collector.hostsetup.fsutil import Snapshot, atomic_write

RECORD_NAME = "host-setup.json"
VERSION = 1


@dataclass(frozen=True)
class SysctlChange:
    key: str  # "kernel.core_pattern"
    previous: str
    installed: str


@dataclass(frozen=True)
class FileChange:
    path: str  # absolute path as written (already under the install root)
    previous: Snapshot
    installed_sha256: str = ""


@dataclass(frozen=True)
class SetupRecord:
    data_dir: str
    root: str
    sysctls: tuple[SysctlChange, ...] = ()
    files: tuple[FileChange, ...] = ()
    created_dirs: tuple[str, ...] = ()  # outermost first
    installed_at: str = ""
    history: tuple[str, ...] = field(default=())  # one line per install run

    def sysctl(self, key: str) -> SysctlChange | None:
        return next((s for s in self.sysctls if s.key == key), None)

    def file(self, path: str) -> FileChange | None:
        return next((f for f in self.files if f.path == path), None)

    @property
    def core_pattern(self) -> str | None:
        s = self.sysctl("kernel.core_pattern")
        return s.installed if s else None


def merge(old: SetupRecord | None, new: SetupRecord) -> SetupRecord:
    """``new`` with every previous value that ``old`` already recorded kept."""
    if old is None:
        return new
    sysctls = {s.key: s for s in old.sysctls}
    for s in new.sysctls:
        sysctls[s.key] = replace(s, previous=sysctls[s.key].previous) if s.key in sysctls else s
    files = {f.path: f for f in old.files}
    for f in new.files:
        files[f.path] = replace(f, previous=files[f.path].previous) if f.path in files else f
    dirs = list(old.created_dirs) + [d for d in new.created_dirs if d not in old.created_dirs]
    return replace(new, sysctls=tuple(sysctls.values()), files=tuple(files.values()),
                   created_dirs=tuple(dirs), history=old.history + new.history)


def _snap_to_json(s: Snapshot) -> dict:
    if not s.exists:
        return {"exists": False}
    out: dict = {"exists": True, "mode": f"{s.mode:o}", "uid": s.uid, "gid": s.gid}
    try:
        out["text"] = (s.content or b"").decode("utf-8")
    except UnicodeDecodeError:
        out["base64"] = base64.b64encode(s.content or b"").decode()
    return out


def _snap_from_json(d: dict) -> Snapshot:
    if not d.get("exists"):
        return Snapshot(exists=False)
    content = d["text"].encode("utf-8") if "text" in d else base64.b64decode(d["base64"])
    return Snapshot(True, content, int(d["mode"], 8), d.get("uid"), d.get("gid"))


def to_json(r: SetupRecord) -> str:
    return json.dumps({
        "version": VERSION,
        "data_dir": r.data_dir,
        "root": r.root,
        "installed_at": r.installed_at,
        "history": list(r.history),
        "sysctls": [{"key": s.key, "previous": s.previous, "installed": s.installed} for s in r.sysctls],
        "files": [{"path": f.path, "installed_sha256": f.installed_sha256, "previous": _snap_to_json(f.previous)}
                  for f in r.files],
        "created_dirs": list(r.created_dirs),
    }, indent=2) + "\n"


def from_json(text: str) -> SetupRecord:
    d = json.loads(text)
    if d.get("version") != VERSION:
        raise ValueError(f"unknown host-setup record version {d.get('version')!r}")
    return SetupRecord(
        data_dir=d["data_dir"], root=d["root"], installed_at=d.get("installed_at", ""),
        history=tuple(d.get("history", ())),
        sysctls=tuple(SysctlChange(s["key"], s["previous"], s["installed"]) for s in d["sysctls"]),
        files=tuple(FileChange(f["path"], _snap_from_json(f["previous"]), f.get("installed_sha256", ""))
                    for f in d["files"]),
        created_dirs=tuple(d.get("created_dirs", ())),
    )


def record_path(data_dir: Path) -> Path:
    return Path(data_dir) / RECORD_NAME


def load(data_dir: Path) -> SetupRecord | None:
    path = record_path(data_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); restore it from a backup or undo by hand") from None


def save(data_dir: Path, r: SetupRecord) -> Path:
    path = record_path(data_dir)
    atomic_write(path, to_json(r), mode=0o600)
    return path
