"""analyzer/model.py: an Analysis round-trips through JSON, problems with
their codes; analyses stored before codes still load."""

from analyzer.model import Analysis, Context, Frame, Module, Recursion, SignalInfo, Thread
from analyzer.problems import CORE_NOT_KEPT, GDB_TIMEOUT, UNKNOWN, Problem


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
