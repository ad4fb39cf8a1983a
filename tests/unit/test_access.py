"""coretriage/access.py: which crashes are for admins only, and what others see of them."""

import dataclasses

from coretriage.access import RESTRICTED_REASON, is_restricted, may_see, redacted, shown
from coretriage.records import CrashRow
from coretriage.reports import crash_report


def row(**meta) -> CrashRow:
    return CrashRow(
        id="c0123456789ab", group_id=7, crashed_at=1795619035.0, ingested_at=1795619036.0, executable="/usr/bin/su",
        signal="SIGSEGV", host="web-1", container="abc", image="shop:1", core_file="cores/c0123456789ab.core.zst",
        exe_file="files/x/su", sysroot=None, meta=meta,
        signature={"text": "parse | main", "key_frames": [1], "skipped": [["raise", "signal machinery"]]},
        analysis={"core": "/x", "executable": "/usr/bin/su", "command_line": "su -c secret-arg",
                  "abort_message": "heap secret", "registers": [["rip", "0x401000"]],
                  "threads": [{"number": 1, "lwp": 5, "crashed": True,
                               "frames": [{"index": 0, "pc": 1, "function": "inner_secret_fn"}]}]})


def test_dump_mode_decides():
    assert not is_restricted({}) and not is_restricted(None) and not is_restricted({"dump_mode": None})
    assert not is_restricted({"dump_mode": 1}) and not is_restricted({"dump_mode": "1"})
    assert is_restricted({"dump_mode": 2}) and is_restricted({"dump_mode": "2"})
    # anything the kernel would not write is not taken as normal
    assert is_restricted({"dump_mode": 0}) and is_restricted({"dump_mode": "two"})
    assert is_restricted({"dump_mode": True}) and is_restricted({"dump_mode": [1]})


def test_admins_see_everything_others_see_only_that_it_happened():
    secret = row(dump_mode=2, environ={"K": "v-secret"}, cmdline=["su", "-c", "secret-arg"], host="web-1")
    assert may_see(True, secret) and not may_see(False, secret) and may_see(False, row(dump_mode=1))
    assert shown(True, secret) is secret and shown(False, row()) == row()
    hidden = shown(False, secret)
    assert (hidden.id, hidden.group_id, hidden.host, hidden.crashed_at) == (secret.id, 7, "web-1", secret.crashed_at)
    assert hidden.core_file is None and hidden.exe_file is None
    assert hidden.meta == {"dump_mode": 2, "host": "web-1", "restricted": RESTRICTED_REASON}
    assert hidden.signature == {"text": "parse | main"}
    for fmt in ("text", "markdown", "json"):
        report = crash_report(hidden, fmt)
        assert RESTRICTED_REASON in report
        assert not any(w in report for w in ("inner_secret_fn", "heap secret", "secret-arg", "v-secret", "0x401000",
                                             "raise"))


def test_redacted_is_idempotent():
    once = redacted(row(dump_mode=2))
    assert redacted(once) == once


def python_row(**meta) -> CrashRow:
    """A Python crash whose analysis read the locals (``python_locals``)."""
    frame = {"function": "charge", "file": "/srv/app/pay.py", "line": 7, "entry": True,
             "locals": [["customer", "'acme'"], ["api_token", "'tok_live_4242'"]]}
    analysis = {**row().analysis, "executable": "/usr/bin/python3.11",
                "python": {"interpreter": "/usr/bin/python3.11", "version": "3.11",
                           "threads": [{"tid": 5, "holds_gil": True, "frames": [frame]}]}}
    return dataclasses.replace(row(**meta), executable="/usr/bin/python3.11", analysis=analysis)


def test_python_locals_are_for_admins_only():
    crash = python_row(dump_mode=1)
    assert shown(True, crash) is crash
    others = shown(False, crash)
    assert others.analysis["python"]["threads"][0]["frames"][0]["locals"] == []
    assert others.analysis["python"]["threads"][0]["frames"][0]["function"] == "charge"
    for fmt in ("text", "markdown", "json"):
        report = crash_report(others, fmt)
        assert "charge" in report and "acme" not in report and "customer" not in report
    admin = crash_report(crash, "text")
    # under the frame, masked as the environment is (a row stored unmasked by an older version too)
    assert 'File "/srv/app/pay.py", line 7, in charge\n         customer = \'acme\'\n' \
           "         api_token = ***\n" in admin
    assert "tok_live" not in crash_report(crash, "json")
    assert shown(False, row()) == row()  # nothing to take away: the row as it is
