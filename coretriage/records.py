"""What ingest hands the store: one crash as a frozen record.

Plain data with no database imports, so ingest can build a record before
(or without) importing SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Analyzed:
    """What analysis and the signature rules made of a crash: the part that
    ``reprocess`` replaces (``Store.update_analysis``)."""

    signature: str  # the group key
    signature_data: dict[str, Any]  # Signature as a dict
    analysis: dict[str, Any]  # Analysis.to_dict()
    executable: str | None
    signal: str | None  # name, e.g. SIGSEGV
    quality: float
    key_frame: str | None = None  # first program frame, for the group list
    search_text: str = ""  # signature + frame names, for the group search
    rules_version: str | None = None  # the signature rule set this crash was grouped with


@dataclass(frozen=True)
class CrashRecord:
    """One crash as ingest stores it (``Store.add_crash``)."""

    id: str  # c + 12 hex digits of the core's SHA-256
    crashed_at: float
    analyzed: Analyzed
    core_file: str | None = None  # relative to the data dir
    exe_file: str | None = None
    sysroot: str | None = None
    host: str | None = None
    container: str | None = None
    image: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # collector metadata
