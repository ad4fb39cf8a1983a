"""pyproject.toml lists every package and the data each one reads at run time."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PROJECT["tool"]["setuptools"]


def _packages_on_disk() -> set[str]:
    found = set()
    for top in ("analyzer", "collector", "coretriage", "webui"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    for name, folder in SETUPTOOLS.get("package-dir", {}).items():
        assert (ROOT / folder / "__init__.py").is_file(), f"{folder} is mapped to {name} but has no __init__.py"
        found.add(name)
    return found


def test_every_package_is_listed():
    assert set(SETUPTOOLS["packages"]) == _packages_on_disk()


def test_host_setup_files_are_package_data():
    assert SETUPTOOLS["package-dir"]["collector.hostsetup.files"] == "host-setup"
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["collector.hostsetup.files"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "host-setup").glob(pattern)}
    on_disk = {p.name for p in (ROOT / "host-setup").iterdir() if p.suffix != ".py" and p.is_file()}
    assert shipped == on_disk


def test_web_templates_and_static_files_are_package_data():
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["webui"]
    shipped = {p for pattern in patterns for p in (ROOT / "webui").glob(pattern)}
    on_disk = {p for sub in ("templates", "static") for p in (ROOT / "webui" / sub).rglob("*") if p.is_file()}
    assert on_disk and shipped == on_disk
