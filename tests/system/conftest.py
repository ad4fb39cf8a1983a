"""Fixtures shared by the system tests."""

from hostfixtures import collector_installed  # noqa: F401  (a fixture, found by pytest here)
