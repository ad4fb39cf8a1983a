"""The fault a program's own crash handler was handed, read from the signal
frame the kernel left on the stack (gdb's ``<signal handler called>``).

The kernel writes a ``siginfo`` there only for a handler installed with
SA_SIGINFO (``analyzer.signals.parse_siginfo`` reads it). uwsgi's SIGSEGV
handler and Python's faulthandler take the signal number alone: their frame
holds no siginfo, only the ``ucontext`` whose ``sigcontext`` has the trap
number, error code and faulting address (cr2) of the exception. Pure: the
caller gives the bytes at that frame's stack pointer.

x86-64's ``rt_sigframe``: the return address (popped by then: gdb's $sp is
past it), the ``ucontext``, then the ``siginfo``.
"""

from __future__ import annotations

import signal as _signal
import struct

from analyzer.signals import RawSiginfo

X86_64_UCONTEXT = 304  # uc_flags, uc_link, uc_stack, sigcontext (256), uc_sigmask
X86_64_SIGCONTEXT = 40  # sigcontext within the ucontext
SIGINFO = 128
WANTED = {"x86-64": X86_64_UCONTEXT + SIGINFO}  # bytes read at the frame's $sp

# x86 exception vectors and the signal the kernel sends for each
_TRAPS = {14: _signal.SIGSEGV, 13: _signal.SIGSEGV, 12: _signal.SIGSEGV, 11: _signal.SIGBUS,
          17: _signal.SIGBUS, 0: _signal.SIGFPE, 16: _signal.SIGFPE, 19: _signal.SIGFPE, 6: _signal.SIGILL}
_PF_PROT = 1  # page-fault error code: the page was present (an access right was missing)
SEGV_MAPERR, SEGV_ACCERR = 1, 2


def siginfo_bytes(arch: str | None, data: bytes) -> bytes:
    """The frame's siginfo bytes (meaningful only for an SA_SIGINFO handler)."""
    if arch == "x86-64":
        return data[X86_64_UCONTEXT:X86_64_UCONTEXT + SIGINFO]
    return b""


def sigcontext_fault(arch: str | None, data: bytes) -> RawSiginfo | None:
    """The exception the registers were saved for, from the ``sigcontext``:
    a page fault with its address and whether the page was mapped, else
    the signal the trap gives. None when it records no fault."""
    if arch != "x86-64" or len(data) < X86_64_UCONTEXT:
        return None
    # err, trapno, oldmask, cr2: after r8-r15, 10 more registers and the segment word
    err, trapno, _oldmask, cr2 = struct.unpack_from("<QQQQ", data, X86_64_SIGCONTEXT + 8 * 8 + 10 * 8 + 8)
    signo = _TRAPS.get(trapno)
    if signo is None:
        return None
    if trapno == 14 and signo == _signal.SIGSEGV:
        return RawSiginfo(signo, SEGV_ACCERR if err & _PF_PROT else SEGV_MAPERR, address=cr2)
    return RawSiginfo(signo, 0x80)  # SI_KERNEL: no address to report
