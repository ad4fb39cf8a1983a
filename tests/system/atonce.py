"""Running work in several threads at once, as concurrent workers or alert
senders do, for the tests of what they race for."""

from __future__ import annotations

import threading


def at_once(work, args, timeout: float = 120) -> None:
    """``work(arg)`` for every one of ``args``, each in a thread of its own,
    all started together; fails with what any of them raised."""
    errors = []

    def run(arg):
        try:
            work(arg)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not errors, errors
