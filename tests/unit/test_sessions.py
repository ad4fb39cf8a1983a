"""webui/sessions.py: when a session ends by itself."""

from coretriage.records import SessionRow
from webui.sessions import alive


def test_idle_and_absolute_limits():
    s = SessionRow(user="ann", csrf="x", created=1000.0, last_seen=5000.0)
    assert alive(s, 5000.0 + 3599, idle=3600, lifetime=86400)
    assert not alive(s, 5000.0 + 3600, idle=3600, lifetime=86400)  # idle
    busy = SessionRow(user="ann", csrf="x", created=1000.0, last_seen=1000.0 + 86399)
    assert alive(busy, 1000.0 + 86399.5, idle=3600, lifetime=86400)
    assert not alive(busy, 1000.0 + 86400, idle=3600, lifetime=86400)  # however busy
