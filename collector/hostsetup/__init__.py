"""Host setup for coretriage: point kernel.core_pattern at the collector's pipe
handler, lift the core size limit for Docker and containerd, install the
collector's systemd unit, undo all of it exactly, and check a host (doctor).

Pure logic (parsing, classifying, rendering, checks) lives in small modules
that take text and return frozen dataclasses; ``install``, ``doctor``,
``procfs``, ``docker`` and ``clock`` are the adapters that touch the system.
"""
