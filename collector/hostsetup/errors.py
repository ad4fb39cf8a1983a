"""Errors that the CLI shows as one line."""

from __future__ import annotations

from analyzer.errors import CoretriageError


class HostSetupError(CoretriageError):
    """Install or uninstall refused or failed; nothing half-done is left unrecorded."""


class OtherHandlerError(HostSetupError):
    """core_pattern belongs to another crash handler (Apport, systemd-coredump, ABRT...)."""


class DaemonJsonError(HostSetupError):
    """/etc/docker/daemon.json cannot be merged (not valid JSON, not an object)."""
