"""Every line of every frame list is a valid regular expression, and the
lists mean what they say on examples."""

import re

import pytest

from analyzer.signature import LISTS, RULES_CODE_VERSION, matches, load_rules, read_list

FILES = sorted(LISTS.glob("*.txt"))


def test_lists_exist():
    assert {p.name for p in FILES} == {"skip.txt", "prefix.txt", "system_modules.txt", "python_skip.txt",
                                       "python_library.txt"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_line_compiles(path):
    lines = read_list(path)
    assert lines, f"{path.name} is empty"
    for line in lines:
        re.compile(line)  # raises on a bad line, naming it
        assert line == line.strip()


def test_lists_classify_examples():
    rules = load_rules()
    assert matches(rules.skip, "raise")
    assert matches(rules.skip, "__pthread_kill_implementation")
    assert matches(rules.skip, "std::terminate")
    assert not matches(rules.skip, "walk_tree")
    assert matches(rules.prefix, "memcpy")
    assert matches(rules.prefix, "__memcpy_avx_unaligned_erms")
    assert not matches(rules.prefix, "string_append")
    assert matches(rules.system_modules, "libc.so.6")
    assert matches(rules.system_modules, "ld-musl-x86_64.so.1")
    assert matches(rules.system_modules, "libstdc++.so.6.0.30")
    assert not matches(rules.system_modules, "libz.so.1")


def test_user_rules_extend_lists(tmp_path):
    (tmp_path / "skip.txt").write_text("# ours\nlog_and_crash\n")
    rules = load_rules(tmp_path)
    assert matches(rules.skip, "log_and_crash")
    assert matches(rules.skip, "raise")


def test_rules_have_a_stable_version(tmp_path):
    base = load_rules()
    assert base.version.startswith(f"{RULES_CODE_VERSION}-") and len(base.version) == 14
    (tmp_path / "skip.txt").write_text("# only a comment\n\n")
    assert load_rules(tmp_path).version == base.version  # comments do not change grouping


def test_edited_user_rules_are_read_again_without_a_restart(tmp_path):
    skip = tmp_path / "skip.txt"
    skip.write_text("log_and_crash\n")
    first = load_rules(tmp_path)
    assert load_rules(tmp_path) is first  # unchanged files: nothing read again
    skip.write_text("log_and_crash\nreport_and_die\n")
    second = load_rules(tmp_path)
    assert matches(second.skip, "report_and_die") and not matches(first.skip, "report_and_die")
    assert second.version != first.version
    (tmp_path / "prefix.txt").write_text("my_memcpy\n")  # a new file counts too
    third = load_rules(tmp_path)
    assert matches(third.prefix, "my_memcpy") and third.version != second.version
