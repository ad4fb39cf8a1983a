"""analyzer/analyze.py without gdb: C string values as gdb prints them
(tests/integration/test_analyze.py runs real gdb on real cores)."""

from analyzer.analyze import parse_c_string


def test_c_string_values():
    assert parse_c_string('0x5555 "free(): double free detected in tcache 2\\n"') == \
        "free(): double free detected in tcache 2\n"
    assert parse_c_string("0x1 \"ab\", 'x' <repeats 12 times>, \"cd\"...") == "ab" + "x" * 12 + "cd"
    assert parse_c_string('0x1 "caf\\303\\251"') == "café"
    assert parse_c_string("0x0") is None
    assert parse_c_string("<error: Cannot access memory at address 0x10>") is None
