"""Who may see what of a crash. Pure: a crash row in, a decision or a row out.

The kernel dumps a set-uid or otherwise non-dumpable process only when
``fs.suid_dumpable=2``, and then as root-only (core_pattern's ``%d`` is 2,
kept in the crash's meta as ``dump_mode``). Such a core may hold what its
owner could not read, so its analysis is for admins only: everyone else sees
that the crash happened, where and when, and ``RESTRICTED_REASON``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from coretriage.records import CrashRow

NORMAL_DUMP = 1  # SUID_DUMP_USER: the process could read its own memory
RESTRICTED = "restricted"  # the code of the problem a redacted analysis carries

RESTRICTED_REASON = ("The kernel dumped this process as root-only (a set-uid or non-dumpable process, "
                     "dump mode 2): only admins see its analysis, command line, environment and core.")

# what a restricted crash still shows: the collector's own view, nothing from the core
_KEPT_META = ("dump_mode", "host", "container", "image", "crash_time", "host_time", "pid", "uid", "gid")


def is_restricted(meta: Mapping[str, Any] | None) -> bool:
    """Whether a crash's analysis is for admins only: its dump mode is
    anything but normal. No dump mode (a core ingested by hand) is normal;
    a dump mode that is not a number is not."""
    mode = (meta or {}).get("dump_mode")
    if mode is None:
        return False
    try:
        return int(mode) != NORMAL_DUMP or isinstance(mode, bool)
    except (TypeError, ValueError):
        return True


def may_see(role_is_admin: bool, row: CrashRow) -> bool:
    return role_is_admin or not is_restricted(row.meta)


def redacted(row: CrashRow) -> CrashRow:
    """The crash as someone who may not see it gets it: the group, when and
    where, and why the rest is hidden; no frame, register, argument,
    environment, message or file from the core."""
    signature = {k: row.signature[k] for k in ("text", "quality") if k in row.signature}
    return dataclasses.replace(
        row, core_file=None, exe_file=None, sysroot=None, signature=signature,
        meta={k: row.meta[k] for k in _KEPT_META if k in row.meta} | {"restricted": RESTRICTED_REASON},
        # the reason as the analysis' one problem, so that every report and page says it
        analysis={"core": "", "executable": row.executable, "threads": [],
                  "problems": [{"code": RESTRICTED, "message": RESTRICTED_REASON}]})


def shown(role_is_admin: bool, row: CrashRow) -> CrashRow:
    """The row itself, or its redacted copy when this role may not see it.
    Python locals (what a request carried) are for admins only, always."""
    if role_is_admin:
        return row
    if not may_see(role_is_admin, row):
        return redacted(row)
    from coretriage.masking import without_locals

    analysis = without_locals(row.analysis or {})
    return row if analysis is row.analysis else dataclasses.replace(row, analysis=analysis)
