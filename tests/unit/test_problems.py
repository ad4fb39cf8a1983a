"""Problem codes: what each wording written before codes maps to, and the
string behaviour callers that still read problems as text rely on."""

import json
import pickle

import pytest

from analyzer import problems as P
from analyzer.problems import Problem, from_text


@pytest.mark.parametrize("message, code", [
    ("core is truncated: memory beyond the cut is missing", P.TRUNCATED_CORE),
    ("not a core dump: not an ELF file", P.NOT_A_CORE),
    ("cannot read core: Permission denied", P.UNREADABLE_CORE),
    ("core not kept: over the size limit", P.CORE_NOT_KEPT),
    ("gdb failed: gdb exited unexpectedly", P.GDB_FAILED),
    ("gdb did not finish within 120 s: backtraces are incomplete", P.GDB_TIMEOUT),
    ("executable /usr/bin/app not found: its frames have no symbols (pass --exe or --sysroot)",
     P.MISSING_EXECUTABLE),
    ("/usr/bin/app is not the build that crashed (build-id 0123, core has 4567)", P.WRONG_BUILD),
    ("thread 1 is deeper than 250000 frames; unwinding stopped there", P.STACK_TOO_DEEP),
    ("no code readable at pc 0x0", P.NO_CODE_AT_PC),
    ("postgres enricher failed: boom", P.ENRICHER_FAILED),
    ("something nobody wrote before", P.UNKNOWN),
])
def test_old_wording_maps_to_a_code(message, code):
    assert from_text(message) == Problem(code, message)
    assert Problem.from_stored(message).code == code


def test_stored_form_round_trips():
    p = Problem(P.GDB_FAILED, "gdb failed: gdb is not installed")
    assert Problem.from_stored(json.loads(json.dumps(p.to_dict()))) == p
    assert Problem.from_stored({"message": "no code given"}).code == P.UNKNOWN


def test_problem_reads_as_its_message():
    p = Problem(P.NOT_A_CORE, "not a core dump: empty")
    assert str(p) == f"{p}" == "not a core dump: empty"
    assert p.startswith("not a core dump") and "empty" in p
    assert json.dumps([p]) == '["not a core dump: empty"]'
    assert pickle.loads(pickle.dumps(p)) == p and pickle.loads(pickle.dumps(p)).code == P.NOT_A_CORE
    assert p != Problem(P.UNKNOWN, "not a core dump: empty")  # the code is part of its identity


def test_every_code_but_unknown_has_a_label():
    assert P.CODES - set(P.LABELS) == {P.UNKNOWN}
    assert len(set(P.LABELS.values())) == len(P.LABELS)
