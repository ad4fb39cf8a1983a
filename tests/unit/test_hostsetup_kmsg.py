"""Counting the crashes the kernel skipped over core_pipe_limit in its log."""

from collector.hostsetup.checks import FAIL, OK, WARN, core_pipe_limit_check
from collector.hostsetup.kmsg import count_skipped, skipped_dumps
from collector.corepattern import classify

PATTERN = classify("|/usr/bin/python3 -m collector.handler --data-dir /var/lib/coretriage %P %i %s %c %d %e %h %t")


def test_counts_the_kernels_words_in_every_format():
    assert count_skipped([
        "4,1201,21579958605,-;coredump: 28627(segv): over core_pipe_limit, skipping core dump",  # /dev/kmsg, 6.x
        "[21580.124906] coredump: 28630(segv): over core_pipe_limit, skipping core dump",  # dmesg, 6.x
        "Pid 4242(haproxy) over core_pipe_limit",  # older kernels
        "4,1202,21579958700,-;Skipping core dump",  # older kernels' second line: not a second crash
    ]) == 3


def test_a_process_name_cannot_fake_or_hide_a_skip():
    # comm is the crashed program's to choose (15 bytes): only what follows its ")" counts
    assert count_skipped(["6,9,1,-;coredump: 7(over core_pipe): segfault at 0 ip 0 sp 0 error 4",
                          "6,10,2,-;a(b) over core_pipe_l): segfault"]) == 0
    assert count_skipped(["4,11,3,-;coredump: 8(x)) ): over core_pipe_limit, skipping core dump"]) == 1


def test_only_the_last_day_counts():
    day = 24 * 3600 * 1_000_000
    lines = [f"4,1,{day},-;coredump: 1(a): over core_pipe_limit, skipping core dump",
             f"[{2 * day // 1_000_000}.5] coredump: 2(b): over core_pipe_limit, skipping core dump"]
    assert count_skipped(lines, since_usec=day) == 2
    assert count_skipped(lines, since_usec=day + 1) == 1
    assert count_skipped(lines, since_usec=2 * day + 500_001) == 0


def test_reads_a_log_file_and_says_none_when_unreadable(tmp_path):
    log, uptime = tmp_path / "kmsg", tmp_path / "uptime"
    log.write_text("4,1,1000000,-;coredump: 1(a): over core_pipe_limit, skipping core dump\n"
                   " SUBSYSTEM=x\n6,2,2,-;ordinary line\n4,3,90000000000,-;coredump: 2(b): over core_pipe_limit\n")
    uptime.write_text("100000.00 1.00\n")  # the first skip was a day and more ago
    assert skipped_dumps(log, uptime=uptime) == 1
    assert skipped_dumps(log, within=1e9, uptime=uptime) == 2
    assert skipped_dumps(tmp_path / "missing", uptime=uptime) is None


def test_doctor_fails_on_skipped_crashes_and_names_the_fix():
    failed = core_pipe_limit_check(PATTERN, "16\n", skipped=5, recommended=128)
    assert failed.status == FAIL and "skipped 5 crash(es) in the last 24 h" in failed.message and "(16)" in failed.message
    assert failed.fix.startswith("sysctl kernel.core_pipe_limit=128")
    assert core_pipe_limit_check(PATTERN, "128\n", skipped=0).status == OK
    assert "none skipped" in core_pipe_limit_check(PATTERN, "128\n", skipped=0).message
    assert core_pipe_limit_check(PATTERN, "128\n", skipped=None).status == OK  # log unreadable: no claim
    assert core_pipe_limit_check(PATTERN, "0\n", skipped=0).status == WARN
    assert core_pipe_limit_check(classify("core"), "0\n", skipped=9) is None  # not our pipe: not our check
