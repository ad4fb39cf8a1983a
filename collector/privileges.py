"""The pipe handler gives up root's powers once it no longer needs them.

The kernel starts the handler as root with every capability. It needs them
only while it reads the crashed process: ``/proc/PID`` of any user, the
files of a container's root, the rate-limit state, the pipe's size. What is
left — reading stdin and writing into the bundle and spool directories it
already holds open (root's own, 0700) — needs no capability at all. So,
before the first byte of the core (the part of the input an attacker
controls most) is read, the handler drops the bounding set, locks root out
of regaining capabilities through execve (securebits), sets NO_NEW_PRIVS and
clears its effective, permitted and inheritable sets. uid 0 stays: the
files it writes stay root's.
"""

from __future__ import annotations

import ctypes
import os

PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE,
# each with its _LOCKED bit: root's execve and setuid give no capabilities back
SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def give_up_privileges() -> str | None:
    """Drop every capability for good; None on success, else why not (the
    handler goes on: a kernel without one of these calls is no reason to lose
    the crash)."""
    libc = ctypes.CDLL(None, use_errno=True)
    failed = []
    if os.geteuid() == 0 and libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0) != 0:
        failed.append(f"securebits: {os.strerror(ctypes.get_errno())}")
    for cap in range(_last_cap() + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() not in (0, 22):  # EINVAL: unknown
            failed.append(f"bounding set: {os.strerror(ctypes.get_errno())}")
            break
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        failed.append(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    header, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        failed.append(f"capset: {os.strerror(ctypes.get_errno())}")
    return "; ".join(failed) or None
