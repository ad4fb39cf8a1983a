import io

import pytest

from analyzer.analyze import parse_c_string
from analyzer.corenotes import NotACore, read_core
from analyzer.enrichers.postgres import mask_literals
from analyzer.model import Analysis, Context, Frame, Module, Recursion, SignalInfo, Thread
from analyzer.problems import CORE_NOT_KEPT, GDB_TIMEOUT, UNKNOWN, Problem
from analyzer.signals import code_name, signal_name


def test_c_string_values():
    assert parse_c_string('0x5555 "free(): double free detected in tcache 2\\n"') == \
        "free(): double free detected in tcache 2\n"
    assert parse_c_string("0x1 \"ab\", 'x' <repeats 12 times>, \"cd\"...") == "ab" + "x" * 12 + "cd"
    assert parse_c_string('0x1 "caf\\303\\251"') == "café"
    assert parse_c_string("0x0") is None
    assert parse_c_string("<error: Cannot access memory at address 0x10>") is None


def test_mask_sql_literals():
    q = "SELECT * FROM users WHERE password = 'hunter2' AND id = 42 AND n = 'it''s'"
    assert mask_literals(q) == "SELECT * FROM users WHERE password = ? AND id = ? AND n = ?"
    assert mask_literals("SELECT $x$secret$x$, col2 FROM t2") == "SELECT ?, col2 FROM t2"


def test_signal_names():
    assert signal_name(11) == "SIGSEGV" and signal_name(6) == "SIGABRT"
    assert code_name(11, 1) == "SEGV_MAPERR" and code_name(6, -6) == "SI_TKILL"
    assert code_name(7, 2) == "BUS_ADRERR" and code_name(11, 0x80) == "SI_KERNEL"


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"hello world, not a core", "not an ELF file"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 5, "unreadable ELF header"),
])
def test_not_a_core(data, reason):
    with pytest.raises(NotACore, match=reason):
        read_core(io.BytesIO(data))


def test_elf_program_is_not_a_core():
    with open("/bin/true", "rb") as f, pytest.raises(NotACore, match="not a core dump"):
        read_core(f)


def test_analysis_round_trips_through_json():
    a = Analysis(core="c", executable="/bin/x", signal=SignalInfo(11, "SIGSEGV", 1, "SEGV_MAPERR", 0),
                 threads=(Thread(1, 42, True, (Frame(0, 0x10, "f", "/bin/x", "ab", 0x10, "f.c", 3),), depth=900),),
                 modules=(Module("/bin/x", 0, 0x1000, "ab", "debug"),), registers=(("rip", "0x10"),),
                 recursion=Recursion(("f",), 800, 900), context=(Context("pg", (("query", "SELECT ?"),)),),
                 problems=("p", Problem(GDB_TIMEOUT, "gdb did not finish within 1 s")))
    import json
    again = Analysis.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a
    assert again.crashing_thread.truncated
    assert a.to_dict()["problems"][1] == {"code": "gdb_timeout", "message": "gdb did not finish within 1 s"}
    assert [p.code for p in again.problems] == ["unknown", "gdb_timeout"]


def test_analysis_stored_with_plain_string_problems_still_loads():
    old = {"core": "c", "problems": ["core not kept: evicted to make room in the spool", "something else"]}
    a = Analysis.from_dict(old)
    assert [p.code for p in a.problems] == [CORE_NOT_KEPT, UNKNOWN]
    assert [str(p) for p in a.problems] == old["problems"]


def test_config_from_file_and_env(tmp_path, monkeypatch):
    from coretriage.config import ConfigError, load_config
    (tmp_path / "coretriage.toml").write_text('gdb_timeout = 5\nbroker_url = "redis://localhost:6379/0"\n')
    monkeypatch.setenv("CORETRIAGE_SHOW_LITERALS", "yes")
    c = load_config(tmp_path)
    assert c.gdb_timeout == 5.0 and c.broker_url.startswith("redis://") and c.show_literals
    assert c.database_url == f"sqlite:///{tmp_path}/coretriage.db"
    (tmp_path / "coretriage.toml").write_text("gdb_timeuot = 5\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(tmp_path)
