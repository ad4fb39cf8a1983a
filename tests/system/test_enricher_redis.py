"""analyzer/enrichers/redis.py on a real Redis (built from Debian's source
package with its debug info) killed by DEBUG SEGFAULT from a real client:
the report names the command, the client, and the fault Redis' own crash
handler was handed before it re-raised the signal."""

import pytest

from coretriage.cli import main
from coretriage.ingest import ingest


@pytest.fixture(scope="module")
def redis_sample(tmp_path_factory):
    from recipes import redis

    return redis.debug_segfault(tmp_path_factory.mktemp("redis"))


def test_the_command_that_crashed_redis(config, store, redis_sample, capsys):
    done = ingest(config, store, redis_sample.core, redis_sample.exe)
    a, sig = done.analysis, done.signature
    ctx = dict(next(c for c in a.context if c.program == "redis").fields)
    assert ctx["command"] == "DEBUG SEGFAULT" and "arguments" not in ctx
    assert ctx["client"].startswith("127.0.0.1:") and ctx["client_id"].isdigit()
    # Redis' sigsegvHandler re-raised with kill(): the fault is what its handler was given
    # (or its crash report's memory test faulted in turn: both end in the fault it was given)
    assert a.signal.code_name == "SEGV_ACCERR" and a.signal.reraised is not None
    assert sig.text == redis_sample.expected_signature
    assert [a.crashing_thread.frames[i].function for i in sig.key_frames][0] == "debugCommand"
    assert main(["--data-dir", str(config.data_dir), "export", done.crash.id, "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert "DEBUG SEGFAULT" in text and "SEGV_ACCERR" in text


def test_without_debug_info_the_report_says_what_is_missing(config, store, redis_sample, tmp_path):
    import shutil
    import subprocess

    stripped = tmp_path / "redis-server"
    shutil.copy(redis_sample.exe, stripped)
    subprocess.run(["strip", "--strip-debug", str(stripped)], check=True)
    a = ingest(config, store, redis_sample.core, stripped).analysis
    ctx = dict(next(c for c in a.context if c.program == "redis").fields)
    assert ctx["command"].startswith("not available: redis-server has no debug info")
