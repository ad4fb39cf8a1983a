"""collector/hostsetup/daemonjson.py: Docker's daemon.json merged with the
core ulimit, everything else kept; invalid files refused."""

import json

import pytest

from builders import DAEMON
from collector.hostsetup.daemonjson import CORE_ULIMIT, merge_core_ulimit
from collector.hostsetup.errors import DaemonJsonError


def test_daemon_json_merge_keeps_everything():
    merged = merge_core_ulimit(json.dumps(DAEMON))
    got = json.loads(merged.text)
    assert merged.changed and list(got) == list(DAEMON)
    assert got["log-opts"] == {"max-size": "10m"}
    assert got["default-ulimits"] == {"nofile": DAEMON["default-ulimits"]["nofile"], "core": CORE_ULIMIT}


def test_daemon_json_created_when_missing_and_untouched_when_done():
    assert json.loads(merge_core_ulimit(None).text) == {"default-ulimits": {"core": CORE_ULIMIT}}
    done = merge_core_ulimit(json.dumps(DAEMON)).text
    again = merge_core_ulimit(done)
    assert not again.changed and again.text == done


@pytest.mark.parametrize("text, match", [
    ('{"log-driver": "json-file",}', "not valid JSON .* line 1"),
    ('["a"]', "JSON list, not an object"),
    ('{"default-ulimits": ["core"]}', '"default-ulimits" is not an object'),
])
def test_daemon_json_refused(text, match):
    with pytest.raises(DaemonJsonError, match=match):
        merge_core_ulimit(text, where="/etc/docker/daemon.json")
