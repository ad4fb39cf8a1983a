"""Is the host clock synchronised? ``timedatectl`` when systemd answers, else
adjtimex(2): TIME_ERROR (5) or STA_UNSYNC in the status means unsynchronised."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from dataclasses import dataclass

TIME_ERROR = 5
STA_UNSYNC = 0x0040


@dataclass(frozen=True)
class ClockStatus:
    synchronised: bool | None  # None: could not tell
    source: str  # "timedatectl", "adjtimex" or why neither worked
    detail: str = ""


def parse_timedatectl(text: str) -> bool | None:
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "NTPSynchronized":
            return {"yes": True, "no": False}.get(value.strip())
    return None


def from_adjtimex(ret: int, status: int) -> ClockStatus:
    unsynced = ret == TIME_ERROR or bool(status & STA_UNSYNC)
    return ClockStatus(not unsynced, "adjtimex",
                       f"adjtimex returned {ret}{' (TIME_ERROR)' if ret == TIME_ERROR else ''}, "
                       f"status 0x{status:04x}{' (STA_UNSYNC)' if status & STA_UNSYNC else ''}")


class _Timex(ctypes.Structure):
    # struct timex on 64-bit Linux; the tail is reserved space (the kernel's is 200+ bytes).
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 512)]


def adjtimex_status() -> ClockStatus:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()  # modes = 0: read only
        ret = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as exc:
        return ClockStatus(None, "adjtimex unavailable", str(exc))
    if ret < 0:
        return ClockStatus(None, "adjtimex failed", f"errno {ctypes.get_errno()}")
    return from_adjtimex(ret, tx.status)


def clock_status() -> ClockStatus:
    tdc = shutil.which("timedatectl")
    if tdc:
        try:
            r = subprocess.run([tdc, "show", "-p", "NTPSynchronized"], capture_output=True, text=True, timeout=10)
            synced = parse_timedatectl(r.stdout) if r.returncode == 0 else None
            if synced is not None:
                return ClockStatus(synced, "timedatectl", f"NTPSynchronized={'yes' if synced else 'no'}")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return adjtimex_status()
