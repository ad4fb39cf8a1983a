"""Names for signal numbers and si_code values (Linux, from <asm/siginfo.h>),
and the reading of a raw ``siginfo_t``: the core's NT_SIGINFO note, or the
one the kernel put in a signal frame for the program's own handler."""

from __future__ import annotations

import signal as _signal
import struct
from dataclasses import dataclass

_GENERIC = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER",
            -3: "SI_MESGQ", -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL"}

_BY_SIGNAL = {
    _signal.SIGSEGV: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR",
                      5: "SEGV_ACCADI", 6: "SEGV_ADIDERR", 7: "SEGV_ADIPERR", 8: "SEGV_MTEAERR",
                      9: "SEGV_MTESERR", 10: "SEGV_CPERR"},
    _signal.SIGBUS: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR", 4: "BUS_MCEERR_AR",
                     5: "BUS_MCEERR_AO"},
    _signal.SIGILL: {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP",
                     5: "ILL_PRVOPC", 6: "ILL_PRVREG", 7: "ILL_COPROC", 8: "ILL_BADSTK"},
    _signal.SIGFPE: {1: "FPE_INTDIV", 2: "FPE_INTOVF", 3: "FPE_FLTDIV", 4: "FPE_FLTOVF",
                     5: "FPE_FLTUND", 6: "FPE_FLTRES", 7: "FPE_FLTINV", 8: "FPE_FLTSUB"},
    _signal.SIGTRAP: {1: "TRAP_BRKPT", 2: "TRAP_TRACE"},
}

# signals whose si_addr is the faulting address
FAULTS = frozenset({_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGFPE})


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def code_name(signo: int, code: int | None) -> str | None:
    if code is None:
        return None
    if code > 0 and code != 0x80 and signo in _BY_SIGNAL:
        return _BY_SIGNAL[signo].get(code)
    return _GENERIC.get(code)


SI_KERNEL = 0x80

# Where the kernel's rt_sigframe keeps the siginfo it handed the handler:
# analyzer.sigframe. Other machines are added when a test has read one of
# their real signal frames.


@dataclass(frozen=True)
class RawSiginfo:
    signo: int
    code: int
    address: int | None = None  # si_addr, for a fault the kernel raised
    sender_pid: int | None = None  # for a signal a process sent (kill, tgkill, sigqueue)
    sender_uid: int | None = None

    @property
    def sent(self) -> bool:
        """Sent by a process (si_code <= 0: SI_USER, SI_QUEUE, SI_TKILL, ...)
        rather than raised by the kernel for a fault."""
        return self.code <= 0


def parse_siginfo(raw: bytes, bits: int = 64) -> RawSiginfo | None:
    """A little-endian ``siginfo_t``; None when too short or not a signal.
    si_code decides what the union holds: a sender's pid and uid when a
    process sent it, the fault address when the kernel raised a fault."""
    union = 16 if bits == 64 else 12  # the union follows three ints, aligned to the word size
    if len(raw) < union + 8:
        return None
    signo, _errno, code = struct.unpack_from("<iii", raw, 0)
    if not 0 < signo < 128:
        return None
    if code <= 0:
        pid, uid = struct.unpack_from("<iI", raw, union)
        return RawSiginfo(signo, code, sender_pid=pid, sender_uid=uid)
    if code != SI_KERNEL and signo in FAULTS:
        (addr,) = struct.unpack_from("<Q" if bits == 64 else "<I", raw, union)
        return RawSiginfo(signo, code, address=addr)
    return RawSiginfo(signo, code)
