"""The one syslog line every capture ends with (``/dev/log``)."""

from __future__ import annotations

LOG_IDENT = "coretriage-collector"


def safe(text: object, limit: int = 200) -> str:
    """Printable ASCII for a log line: names from a crashed process hold any byte."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "..."
    return s.encode("unicode_escape", "backslashreplace").decode("ascii")


def log(priority_name: str, message: str) -> None:
    """One line to syslog; never raises (no /dev/log: the line is lost)."""
    try:
        import syslog

        syslog.openlog(LOG_IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(getattr(syslog, priority_name), message)
        syslog.closelog()
    except Exception:
        pass
