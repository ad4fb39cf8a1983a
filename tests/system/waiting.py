"""Waiting for something a real service does in its own time."""

from __future__ import annotations

import time

import pytest


def wait_for(probe, what: str, timeout: float = 60.0):
    """``probe()``'s first true answer; the test fails if none comes in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
