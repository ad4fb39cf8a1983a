"""MI frame records with fields gdb could not read (an aarch64 core under
the host's gdb, a frame past a corrupt stack, optimized-out line info): the
parser marks them unavailable and never raises; every reader of a frame
(describe, signatures, the crash page's model) copes with a pc of None."""

from pygdbmi.gdbmiparser import parse_response

from analyzer.analyze import parse_frame, pick_registers
from analyzer.model import Analysis, Frame, Thread, SignalInfo
from analyzer.signature import generate

# as gdb prints them in -stack-list-frames answers
MI = ('^done,stack=['
      'frame={level="0",addr="<unavailable>",func="??"},'
      'frame={level="1",addr="0x00000000004006f0",func="header_length",file="segv.c",fullname="/src/segv.c",'
      'line="<optimized out>",arch="aarch64"},'
      'frame={level="2",func="<unavailable>"},'
      'frame={level="3",addr="0x000000550291b808",from="/usr/lib/aarch64-linux-gnu/libc.so.6",arch="aarch64"},'
      'frame={level="<unavailable>",addr="0xzz",func="main",file="segv.c",line="27"}]')


def records():
    return parse_response(MI)["payload"]["stack"]


def test_unavailable_fields_become_none_and_are_named():
    fs = [Frame(**parse_frame(r)) for r in records()]
    assert fs[0].pc is None and fs[0].function is None and fs[0].unavailable == ("pc",)
    assert fs[1].pc == 0x4006F0 and fs[1].function == "header_length" and fs[1].line is None
    assert fs[1].unavailable == ("line",)
    assert fs[2].pc is None and fs[2].unavailable == ("pc", "function")
    assert fs[3].function is None and fs[3].unavailable == ()
    assert fs[4].pc is None and fs[4].index == 0 and fs[4].line == 27  # a bad level or address, never a raise
    assert "<unavailable>" in fs[0].describe() and "<unavailable> <unavailable>" in fs[2].describe()
    assert fs[1].describe().endswith("at segv.c:<unavailable>")


def test_missing_fields_are_not_an_error():
    frame = Frame(**parse_frame({}))
    assert frame.pc is None and frame.index == 0 and frame.unavailable == ("pc",)


def test_an_analysis_with_unavailable_frames_signs_and_round_trips():
    fs = tuple(Frame(**parse_frame(r)) for r in records())
    a = Analysis(core="c", threads=(Thread(1, 1, True, fs),), signal=SignalInfo(11, "SIGSEGV"),
                 architecture="aarch64")
    sig = generate(a)
    assert "@<unavailable>" in sig.text and "header_length" in sig.text
    back = Analysis.from_dict(a.to_dict())
    assert back == a and back.threads[0].frames[2].unavailable == ("pc", "function")


def test_registers_by_name_in_the_architectures_order():
    names = ["x0", "x1", "", "sp", "pc", "cpsr", "fpsr"]
    asked = []

    def read(numbers):
        asked.append(numbers)
        return {"register-values": [{"number": "0", "value": "0x0"}, {"number": "4", "value": "0x41de88"},
                                    {"number": "3", "value": "<unavailable>"}, {"number": "99", "value": "1"}]}

    got = pick_registers(names, ("pc", "x0", "sp", "x30"), read)
    assert asked == [[4, 0, 3]] and got == (("pc", "0x41de88"), ("x0", "0x0"), ("sp", "<unavailable>"))
    assert pick_registers([], ("pc",), read) == ()
