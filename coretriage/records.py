"""The store's plain data: what ingest hands it (one crash as a frozen
record) and the rows it gives back.

No database imports, so ingest can build a record before SQLAlchemy is
loaded, and ``coretriage list`` can read groups without it at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.errors import CoretriageError


class NotFound(CoretriageError):
    """No crash or group by that id."""


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
    analysis_seconds: float | None = None  # how long the analysis took (/metrics' histogram)
    bundle_id: str | None = None  # the spool bundle it came from: stored once per bundle
    failure: str | None = None  # why the analysis gave no backtrace (a problem code); None: it gave one


@dataclass(frozen=True)
class GroupQuery:
    """Filters, sort and page for the group list (web UI and API)."""

    sort: str = "last_seen"  # last_seen | count | first_seen
    executable: str | None = None
    image: str | None = None
    container: str | None = None
    host: str | None = None
    signal: str | None = None
    state: str | None = None
    since: float | None = None  # last seen at or after
    until: float | None = None  # first seen at or before
    search: str | None = None
    limit: int = 50
    offset: int = 0
    # Count the matches only up to offset + count_limit (None: exactly): at
    # fleet scale counting is most of a page's cost, and "1,000+" tells a
    # reader as much.
    count_limit: int | None = None

    @property
    def count_cap(self) -> int | None:
        """The most matches find_groups counts: past this page, always."""
        return None if self.count_limit is None else self.offset + max(self.count_limit, self.limit + 1)

    def count_capped(self, total: int) -> bool:
        """Whether ``total`` from find_groups is a floor, the count cut short."""
        return self.count_cap is not None and total >= self.count_cap


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class TokenRow:
    """An API token as ``token list`` shows it: never the token itself."""

    id: str  # the first 12 hex digits of the token's hash: what ``token revoke`` takes
    user: str
    created: float
    expires: float | None  # None: made by an old version and never upgraded (refused)
    last_used: float | None


@dataclass(frozen=True)
class SessionRow:
    """A logged-in browser (``web_sessions``); its cookie holds the id whose
    hash is the key."""

    user: str
    csrf: str  # this session's CSRF token: a new one at every login
    created: float
    last_seen: float
    data: dict[str, Any] = field(default_factory=dict)  # flashed messages
    role: str | None = None  # its user's, read with it (None: no such user, or not read)


@dataclass(frozen=True)
class GroupRow:
    id: int
    signature: str
    executable: str | None
    signal: str | None
    count: int
    first_seen: float
    last_seen: float
    quality: float
    state: str
    note: str
    key_frame: str | None = None
    search_text: str = ""
    renamed_from: str | None = None  # the signature before symbols arrived (coretriage.resymbol)
    renamed_at: float | None = None

    @property
    def ref(self) -> str:
        return f"g{self.id}"


@dataclass(frozen=True)
class CrashRow:
    id: str
    group_id: int
    crashed_at: float
    ingested_at: float
    executable: str | None
    signal: str | None
    host: str | None
    container: str | None
    image: str | None
    core_file: str | None
    exe_file: str | None
    sysroot: str | None
    analysis: dict[str, Any]
    signature: dict[str, Any]
    meta: dict[str, Any]
    rules_version: str | None = None
    analysis_seconds: float | None = None
    dropped: str | None = None  # coretriage.drops.REASONS
    bundle_id: str | None = None
    failure: str | None = None  # why its analysis gave no backtrace (a problem code)

    @property
    def group_ref(self) -> str:
        return f"g{self.group_id}"
