"""The adversarial suite: one file per attack class, each run against the
real kernel, the real pipe handler and the real web server (SECURITY.md says
who the attackers are and what each must never get).

==============================  ============================================
attack class                    file
==============================  ============================================
pid reuse                       test_pid_reuse.py
symlink/hardlink spool attacks  test_spool_links.py
path traversal                  test_path_traversal.py
root-escape file reads          test_root_escape.py
FIFO and device swaps           test_fifo_swap.py
world-readable data             test_data_permissions.py
build-id forgery                test_build_id_forgery.py
hostile ELF/DWARF/gdb scripts   test_hostile_binaries.py
hostile core vs. root handler   test_handler_privileges.py
crash storms                    test_crash_storms.py
sparse giant cores              test_sparse_giant_cores.py
set-uid and non-dumpable        test_setuid_crashes.py
session replay                  test_session_replay.py
privilege escalation in the UI  test_ui_privileges.py
secret leaks                    test_secret_leaks.py
host tokens and hostile uploads test_host_tokens.py
==============================  ============================================
"""

from hostfixtures import collector_installed  # noqa: F401  (a fixture, found by pytest here)
