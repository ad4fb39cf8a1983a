"""analyzer/signals.py: signal and si_code names."""

from analyzer.signals import code_name, signal_name


def test_signal_names():
    assert signal_name(11) == "SIGSEGV" and signal_name(6) == "SIGABRT"
    assert code_name(11, 1) == "SEGV_MAPERR" and code_name(6, -6) == "SI_TKILL"
    assert code_name(7, 2) == "BUS_ADRERR" and code_name(11, 0x80) == "SI_KERNEL"


def test_parse_siginfo_by_si_code():
    import struct

    from analyzer.signals import parse_siginfo

    def raw(signo, code, first, second=0):
        return struct.pack("<iiiiQ", signo, 0, code, 0, first) + bytes(8) if second == 0 else \
            struct.pack("<iiiiiI", signo, 0, code, 0, first, second) + bytes(12)

    fault = parse_siginfo(raw(11, 1, 0x1010))  # SEGV_MAPERR: the union holds si_addr
    assert fault.address == 0x1010 and fault.sender_pid is None and not fault.sent
    sent = parse_siginfo(raw(11, 0, 4242, 1000))  # SI_USER: si_pid, si_uid, never an address
    assert sent.sent and sent.address is None and (sent.sender_pid, sent.sender_uid) == (4242, 1000)
    assert parse_siginfo(raw(11, 0x80, 0x1010)).address is None  # SI_KERNEL: no address to trust
    assert parse_siginfo(raw(0, 1, 0)) is None and parse_siginfo(b"\x0b\0\0\0") is None
