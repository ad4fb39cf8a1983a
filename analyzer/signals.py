"""Names for signal numbers and si_code values (Linux, from <asm/siginfo.h>)."""

from __future__ import annotations

import signal as _signal

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
