"""coretriage/ingest.py: the same bug lands in one group whatever the input;
two bugs in two; reprocess and edited rules; garbage is recorded with a reason."""

from analyzer import problems as P
from coretriage.ingest import ingest, reprocess


def test_same_bug_five_times_one_group(config, store, samples):
    ids = set()
    for variant in range(5):
        s = samples("segv", variant)
        done = ingest(config, store, s.core, s.exe)
        assert done.new
        ids.add(done.crash.group_id)
    assert len(ids) == 1
    group = store.group(ids.pop())
    assert group.count == 5 and group.first_seen <= group.last_seen


def test_thread_count_does_not_split_group(config, store, samples):
    groups = {ingest(config, store, samples("thread", v).core, samples("thread", v).exe).crash.group_id
              for v in (0, 3)}
    assert len(groups) == 1


def test_two_assertions_two_groups(config, store, samples):
    a = ingest(config, store, samples("assert_balance").core, samples("assert_balance").exe)
    b = ingest(config, store, samples("assert_queue").core, samples("assert_queue").exe)
    assert a.crash.group_id != b.crash.group_id


def test_ingest_is_idempotent(config, store, samples):
    s = samples("musl")
    first = ingest(config, store, s.core, s.exe)
    again = ingest(config, store, s.core, s.exe)
    assert first.crash.id == again.crash.id and not again.new
    assert store.group(first.crash.group_id).count == 1
    assert (config.data_dir / first.crash.core_file).stat().st_size < s.core.stat().st_size


def test_reprocess_after_rule_change_moves_crashes_and_keeps_ids(config, store, samples):
    seg = [ingest(config, store, samples("segv", v).core, samples("segv", v).exe) for v in (0, 1)]
    dfree = ingest(config, store, samples("double_free").core, samples("double_free").exe)
    old_group = seg[0].crash.group_id
    # a user rule: header_length is a helper that says nothing about the bug
    config.rules_dir.mkdir(parents=True)
    (config.rules_dir / "skip.txt").write_text("header_length\n")
    result = reprocess(config, store)
    assert result["crashes"] == 3
    group = store.group(old_group)  # same id, new signature
    assert group.signature == "strlen | parse_request | main"
    assert group.count == 2
    assert store.crash(dfree.crash.id).group_id == dfree.crash.group_id


def test_new_crash_in_resolved_group_marks_it_regressed(config, store, samples):
    first = ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe)
    gid = first.crash.group_id
    store.set_state(gid, "resolved", "fixed in 1.3")
    ingest(config, store, samples("segv", 1).core, samples("segv", 1).exe)
    group = store.group(gid)
    assert group.state == "regressed" and group.count == 2 and group.note == "fixed in 1.3"
    store.set_state(gid, "ignored")
    ingest(config, store, samples("segv", 2).core, samples("segv", 2).exe)
    assert store.group(gid).state == "ignored"  # ignoring is a decision that new crashes do not undo


def test_running_process_picks_up_an_edited_rule_file(config, store, samples):
    """No reprocess and no restart: the next crash uses the edited list."""
    before = ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe).signature
    assert "header_length" in before.text
    config.rules_dir.mkdir(parents=True)
    (config.rules_dir / "skip.txt").write_text("header_length\n")
    after = ingest(config, store, samples("segv", 1).core, samples("segv", 1).exe).signature
    assert after.text == "strlen | parse_request | main"
    assert after.rules_version and after.rules_version != before.rules_version


def test_garbage_is_recorded_with_a_reason(config, store, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 200)
    done = ingest(config, store, junk)
    assert done.analysis.problems[0].startswith("not a core dump")
    assert done.analysis.problems[0].code == P.NOT_A_CORE
    assert done.crash.id and done.signature.text.startswith("unknown | no signal")


def test_the_program_kept_with_a_crash_is_checked_not_taken_from_the_sandbox_on_trust(samples, tmp_path):
    # the analysis sandbox's answer is data: where it says it found the program is checked
    # before root opens and copies it into the store
    import os

    from analyzer import elfid
    from pathlib import Path

    from coretriage.ingest import _is_the_build

    s = samples("segv")
    fd = os.open(s.exe, os.O_RDONLY)
    try:
        build = elfid.build_id(elfid.fd_reader(fd))
    finally:
        os.close(fd)
    assert build and _is_the_build(s.exe, build)
    assert not _is_the_build(s.exe, "00" * 20)  # another build
    assert not _is_the_build(Path("/etc/shadow"), None)  # not a binary
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not _is_the_build(fifo, None)  # never opened for a blocking read
    (tmp_path / "link").symlink_to(s.exe)
    assert not _is_the_build(tmp_path / "link", build)
