"""analyzer/signals.py: signal and si_code names."""

from analyzer.signals import code_name, signal_name


def test_signal_names():
    assert signal_name(11) == "SIGSEGV" and signal_name(6) == "SIGABRT"
    assert code_name(11, 1) == "SEGV_MAPERR" and code_name(6, -6) == "SI_TKILL"
    assert code_name(7, 2) == "BUS_ADRERR" and code_name(11, 0x80) == "SI_KERNEL"
