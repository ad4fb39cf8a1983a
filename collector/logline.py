"""The one syslog line every capture ends with (``/dev/log``). It is masked
(``analyzer.secrets``) on the way out: an error message can quote anything
the crashed process handed over."""

from __future__ import annotations

from analyzer.secrets import DEFAULT_SECRET_NAMES, mask_text

LOG_IDENT = "coretriage-collector"


def safe(text: object, limit: int = 200) -> str:
    """Printable ASCII for a log line: names from a crashed process hold any byte."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "..."
    return s.encode("unicode_escape", "backslashreplace").decode("ascii")


def log(priority_name: str, message: str, secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES) -> None:
    """One line to syslog, masked; never raises (no /dev/log: the line is lost)."""
    try:
        import syslog

        message = mask_text(message, secret_names)
        syslog.openlog(LOG_IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(getattr(syslog, priority_name), message)
        syslog.closelog()
    except Exception:
        pass
