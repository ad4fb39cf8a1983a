"""Signature rules on hand-built frame lists (the integration tests run
the same rules on real cores)."""

from dataclasses import replace

from analyzer import problems as P
from analyzer.model import Analysis, Frame, Recursion, SignalInfo, Thread
from analyzer.problems import Problem
from analyzer.signature import generate, load_rules

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
APP = "/usr/sbin/app"


def frames(*specs):
    out = []
    for i, spec in enumerate(specs):
        func, module, offset = (spec + (None, None))[:3] if isinstance(spec, tuple) else (spec, APP, None)
        out.append(Frame(index=i, pc=0x1000 + i, function=func, module=module,
                         offset=offset if offset is not None else 0x100 * (i + 1)))
    return tuple(out)


def analysis(fs, **kw):
    return Analysis(core="x", executable=APP, threads=(Thread(1, 1, True, fs),),
                    signal=SignalInfo(11, "SIGSEGV"), **kw)


def test_abort_machinery_is_skipped_and_allocator_kept_as_prefix():
    a = analysis(frames(("__pthread_kill_implementation", LIBC), ("__GI_raise", LIBC), ("__GI_abort", LIBC),
                        ("__libc_message", LIBC), ("malloc_printerr", LIBC), ("_int_free", LIBC),
                        ("__GI___libc_free", LIBC), "release", "close_conn", "serve", "main"))
    sig = generate(a)
    assert sig.text == "_int_free | free | release | close_conn | serve"
    assert sig.key_frames == (7, 8, 9)
    reasons = dict(sig.skipped)
    assert reasons["#1 raise"].startswith("raising")


def test_unsymbolized_frames_use_module_offset_not_address():
    a1 = analysis(frames((None, APP, 0x1234), (None, APP, 0x5678), ("main", APP, 0x9)))
    fs = tuple(Frame(f.index, f.pc + 0x7f0000000000, f.function, f.module, None, f.offset) for f in a1.threads[0].frames)
    a2 = analysis(fs)
    assert generate(a1).text == generate(a2).text == "app+0x1234 | app+0x5678 | main"
    assert generate(a1).quality == 0.33


def test_recursion_depth_does_not_change_signature():
    # a stack overflow keeps its innermost frames, and its outermost only
    # when it was shallow enough to unwind: its signature ends with the cycle
    deep = analysis(frames(*(["recurse"] * 256 + ["recurse"] * 16 + ["main"])),
                    recursion=Recursion(("recurse",), 30000, 30017))
    deeper = analysis(frames(*(["recurse"] * 256)), recursion=Recursion(("recurse",), 9984, 10000, True))
    deep = replace(deep, threads=(replace(deep.threads[0], depth=30017),))
    deeper = replace(deeper, threads=(replace(deeper.threads[0], depth=10000, depth_is_minimum=True),))
    assert generate(deep).text == generate(deeper).text == "recurse"
    assert any("recursion of recurse, at least 10,000 frames deep" in n for n in generate(deeper).notes)
    # a shallow recursion that crashed is not an overflow: its callers stay
    shallow = analysis(frames(*(["recurse"] * 9 + ["handle", "main"])), recursion=Recursion(("recurse",), 9, 11))
    assert generate(shallow).text == "recurse | handle | main"


def test_crash_handler_frames_above_signal_are_dropped():
    a = analysis(frames("dump_state", "crash_handler", ("<signal handler called>", LIBC), "parse", "main"))
    assert generate(a).text == "parse | main"


def test_leading_libc_internals_dropped_prefix_kept():
    a = analysis(frames(("__memmove_avx_unaligned_erms", LIBC), (None, "/lib/libz.so.1", 0x40),
                        ("deflate", "/lib/libz.so.1"), "compress_flush", "process_stream"))
    assert generate(a).text == "memmove | libz.so.1+0x40 | deflate | compress_flush"


def test_only_library_frames_still_gives_a_signature():
    a = analysis(frames(("_dl_relocate_object", "/lib64/ld-linux-x86-64.so.2"), ("_dl_start", "/lib64/ld-linux-x86-64.so.2")))
    assert generate(a).text == "_dl_relocate_object | _dl_start"


def test_assertion_text_separates_two_assertions_in_one_function():
    fs = frames(("raise", LIBC), ("abort", LIBC), ("__assert_fail", LIBC), "check", "main")
    one = generate(analysis(fs, assertion="a < b"))
    two = generate(analysis(fs, assertion="c != NULL"))
    assert one.text != two.text
    assert one.text == "check | main | assert(a < b)"


def test_no_threads_gives_explainable_signature():
    a = Analysis(core="x", problems=("not a core dump: not an ELF file",))
    sig = generate(a)
    assert sig.text == "unknown | no signal | not a core dump"


def frameless(*problems):
    return Analysis(core="x", executable=APP, signal=SignalInfo(11, "SIGSEGV"), problems=problems)


def test_frameless_group_keys_on_the_code_not_the_wording():
    one = generate(frameless(Problem(P.CORE_NOT_KEPT, "core not kept: over the size limit")))
    two = generate(frameless(Problem(P.CORE_NOT_KEPT, "Core dropped (crash storm): not kept")))
    assert one.text == two.text == "app | SIGSEGV | core not kept"
    assert one.notes != two.notes  # the message is still shown, beside the group


def test_frameless_groups_of_different_codes_differ():
    texts = {generate(frameless(Problem(code, "same words"))).text for code in sorted(P.LABELS)}
    assert len(texts) == len(P.LABELS)


def test_frameless_old_string_without_a_code_keeps_its_old_group():
    sig = generate(frameless("collector gave up: disk full"))
    assert sig.text == "app | SIGSEGV | collector gave up"
    assert generate(frameless()).text == "app | SIGSEGV | no frames"


def test_signatures_carry_the_rules_version():
    version = load_rules().version
    assert generate(frameless()).rules_version == version
    assert generate(analysis(frames("parse", "main"))).rules_version == version
