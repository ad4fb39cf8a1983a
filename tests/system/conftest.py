"""Fixtures shared by the system tests."""

from hostfixtures import collector_installed, data_dir  # noqa: F401  (fixtures, found by pytest here)
