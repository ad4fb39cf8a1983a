"""The fault a program's own crash handler caught, read from the signal
frame the kernel left on the stack.

uwsgi's SIGSEGV handler, Python's faulthandler and many servers' handlers
print something and then abort() or raise the signal again: the core then
says SIGABRT (or a SIGSEGV sent by the process to itself, no address), and
the real fault is in the frame the kernel pushed when it ran the handler,
the one gdb shows as ``<signal handler called>``. Pure: the caller gives the
bytes at that frame's stack pointer.

x86-64: ``rt_sigframe`` is the return address (popped by then), a
``ucontext`` whose ``sigcontext`` holds the trap number, error code and
faulting address (cr2) of the exception, and a ``siginfo`` only when the
handler asked for one (SA_SIGINFO). aarch64: the ``siginfo`` comes first,
always written.
"""

from __future__ import annotations

import signal as _signal
import struct

from analyzer.model import SignalInfo
from analyzer.signals import FAULTS, code_name, signal_name

X86_64_UCONTEXT = 304  # uc_flags, uc_link, uc_stack, sigcontext (256), uc_sigmask
X86_64_SIGCONTEXT = 40  # sigcontext within the ucontext
SIGINFO = 128
WANTED = {"x86-64": X86_64_UCONTEXT + SIGINFO, "aarch64": SIGINFO}

# x86 exception vectors and the signal the kernel sends for each
_TRAPS = {14: _signal.SIGSEGV, 13: _signal.SIGSEGV, 12: _signal.SIGSEGV, 11: _signal.SIGBUS,
          17: _signal.SIGBUS, 0: _signal.SIGFPE, 16: _signal.SIGFPE, 19: _signal.SIGFPE, 6: _signal.SIGILL}
_PF_PROT = 1  # page-fault error code: the page was present (an access right was missing)


def caught_signal(arch: str | None, data: bytes) -> SignalInfo | None:
    """The signal a handler caught, from ``WANTED[arch]`` bytes at the
    signal frame's stack pointer; None when they do not hold a fault."""
    if arch == "x86-64" and len(data) >= X86_64_UCONTEXT:
        return _x86_64(data)
    if arch == "aarch64" and len(data) >= SIGINFO:
        return _siginfo(data[:SIGINFO])
    return None


def _siginfo(raw: bytes) -> SignalInfo | None:
    signo, _errno, code = struct.unpack_from("<iii", raw, 0)
    if signo not in FAULTS:
        return None
    (address,) = struct.unpack_from("<Q", raw, 16)
    return SignalInfo(signo, signal_name(signo), code, code_name(signo, code), address)


def _x86_64(data: bytes) -> SignalInfo | None:
    # err, trapno, oldmask, cr2: after r8-r15, 10 registers and the segment word
    err, trapno, _oldmask, cr2 = struct.unpack_from("<QQQQ", data, X86_64_SIGCONTEXT + 8 * 8 + 10 * 8 + 8)
    signo = _TRAPS.get(trapno)
    if len(data) >= X86_64_UCONTEXT + SIGINFO:  # SA_SIGINFO: the kernel's own siginfo, if it agrees
        info = _siginfo(data[X86_64_UCONTEXT:X86_64_UCONTEXT + SIGINFO])
        if info is not None and (signo is None or info.number == signo):
            return info
    if signo is None:
        return None
    if trapno == 14 and signo == _signal.SIGSEGV:
        code = 2 if err & _PF_PROT else 1  # SEGV_ACCERR, SEGV_MAPERR
        return SignalInfo(signo, signal_name(signo), code, code_name(signo, code), cr2)
    return SignalInfo(signo, signal_name(signo), None, None, None)
