"""collector/hostsetup/install.py: install and uninstall against fake /proc
and root trees (the ``host`` and ``short_tmp`` fixtures are in conftest.py;
tests/system/test_hostsetup.py runs them on the real kernel)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders import APPORT_PATTERN, HANDLER, handler_argv, make_proc, tree
from collector.hostsetup import record
from collector.hostsetup.daemonjson import CORE_ULIMIT
from collector.hostsetup.errors import DaemonJsonError, HostSetupError, OtherHandlerError
from collector.hostsetup.install import install, uninstall
from collector.hostsetup.render import parse_sysctl_conf


def test_install_then_uninstall_leaves_no_trace(host):
    base, root = host
    proc = make_proc(base)
    data = base / "data"
    before_root, before_proc = tree(root), tree(proc)
    report = install(data, handler_argv(data), root=root, proc=proc, python="/opt/ct/bin/python")
    assert (proc / "sys/kernel/core_pattern").read_text() == report.core_pattern + "\n"
    assert report.core_pattern.startswith("|/usr/bin/python3 -m collector.handler")
    assert (proc / "sys/kernel/core_pipe_limit").read_text() == "128\n"
    assert report.previous_core_pattern == "core" and report.replaced_handler is None
    assert any("restart dockerd" in s or "restart containerd and dockerd" in s for s in report.next_steps)
    daemon = json.loads((root / "etc/docker/daemon.json").read_text())
    assert daemon["default-ulimits"]["core"] == CORE_ULIMIT and daemon["log-opts"] == {"max-size": "10m"}
    assert (root / "etc/docker/daemon.json.coretriage-backup").read_bytes() == before_root["etc/docker/daemon.json"]
    assert parse_sysctl_conf((root / "etc/sysctl.d/50-coretriage.conf").read_text())["kernel.core_pattern"] \
        == report.core_pattern
    assert "--data-dir " + str(data) in (root / "etc/systemd/system/coretriage-collector.service").read_text()
    rec = json.loads((data / "host-setup.json").read_text())
    assert {s["key"]: s["previous"] for s in rec["sysctls"]} == {"kernel.core_pattern": "core",
                                                                  "kernel.core_pipe_limit": "0"}
    assert (data / "host-setup.json").stat().st_mode & 0o777 == 0o600

    undone = uninstall(data, root=root, proc=proc)
    assert not undone.left and undone.record is None
    assert tree(root) == before_root and tree(proc) == before_proc
    assert not data.exists()


def test_second_install_keeps_the_first_previous_values(host):
    base, root = host
    proc = make_proc(base, core_pattern="/var/crash/core.%p", pipe_limit="4")
    data = base / "data"
    before_root, before_proc = tree(root), tree(proc)
    install(data, handler_argv(data), root=root, proc=proc)
    second = install(data, handler_argv(data)[:-2], root=root, proc=proc)  # a different command
    assert second.previous_core_pattern.startswith("|/usr/bin/python3")
    rec = record.load(data)
    assert rec.sysctl("kernel.core_pattern").previous == "/var/crash/core.%p"
    assert rec.sysctl("kernel.core_pattern").installed == second.core_pattern
    assert rec.sysctl("kernel.core_pipe_limit").previous == "4"
    backup = rec.file(str(root / "etc/docker/daemon.json.coretriage-backup"))
    assert not backup.previous.exists
    assert (root / "etc/docker/daemon.json.coretriage-backup").read_bytes() == before_root["etc/docker/daemon.json"]
    assert len(rec.history) == 2
    third = install(data, handler_argv(data)[:-2], root=root, proc=proc)
    assert not any("created" in c or "updated" in c for c in third.changes)
    uninstall(data, root=root, proc=proc)
    assert tree(root) == before_root and tree(proc) == before_proc


def test_long_command_installs_a_root_owned_wrapper(host):
    base, root = host
    proc = make_proc(base)
    data = base / ("d" * 50)
    argv = handler_argv(data)
    report = install(data, argv, root=root, proc=proc)
    wrapper = data / "bin/coretriage-core-handler"
    assert report.wrapper == wrapper and report.core_pattern == f"|{wrapper} " + " ".join(HANDLER[5:])
    st = wrapper.stat()
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == 0  # root runs it; nobody else reads it
    assert data.stat().st_mode & 0o777 == 0o700 and (data / "bin").stat().st_mode & 0o777 == 0o700
    assert f"exec /usr/bin/python3 -m collector.handler --data-dir {data} \"$@\"" in wrapper.read_text()
    uninstall(data, root=root, proc=proc)
    assert not data.exists()


def test_missing_daemon_json_is_created_and_removed_again(short_tmp):
    tmp_path = short_tmp
    root = tmp_path / "root"
    root.mkdir()
    proc = make_proc(tmp_path)
    install(tmp_path / "data", handler_argv(tmp_path / "data"), root=root, proc=proc)
    assert json.loads((root / "etc/docker/daemon.json").read_text()) == {"default-ulimits": {"core": CORE_ULIMIT}}
    assert not (root / "etc/docker/daemon.json.coretriage-backup").exists()
    uninstall(tmp_path / "data", root=root, proc=proc)
    assert tree(root) == {}


def test_invalid_daemon_json_refuses_before_changing_anything(host):
    base, root = host
    (root / "etc/docker/daemon.json").write_text('{"log-driver": "json-file",,}')
    proc = make_proc(base)
    before = tree(base)
    with pytest.raises(DaemonJsonError, match="daemon.json is not valid JSON"):
        install(base / "data", handler_argv(base / "data"), root=root, proc=proc)
    assert tree(base) == before


def test_other_handler_needs_replace_and_comes_back(host):
    base, root = host
    proc = make_proc(base, core_pattern=APPORT_PATTERN)
    data = base / "data"
    before = tree(base)
    with pytest.raises(OtherHandlerError, match=r"Apport \(/usr/share/apport/apport\).*--replace"):
        install(data, handler_argv(data), root=root, proc=proc)
    assert tree(base) == before
    report = install(data, handler_argv(data), root=root, proc=proc, replace_existing=True)
    assert report.replaced_handler == "Apport (/usr/share/apport/apport)"
    uninstall(data, root=root, proc=proc)
    assert (proc / "sys/kernel/core_pattern").read_text() == APPORT_PATTERN + "\n"
    assert tree(base) == before


def test_uninstall_leaves_what_someone_else_changed_unless_forced(host):
    base, root = host
    proc = make_proc(base)
    data = base / "data"
    install(data, handler_argv(data), root=root, proc=proc)
    (proc / "sys/kernel/core_pattern").write_text("|/lib/systemd/systemd-coredump %P\n")
    undone = uninstall(data, root=root, proc=proc)
    assert len(undone.left) == 1 and "kernel.core_pattern" in undone.left[0]
    assert (proc / "sys/kernel/core_pattern").read_text() == "|/lib/systemd/systemd-coredump %P\n"
    assert (root / "etc/docker/daemon.json.coretriage-backup").exists() is False
    assert undone.record == data / "host-setup.json" and record.load(data).sysctls[0].key == "kernel.core_pattern"
    forced = uninstall(data, root=root, proc=proc, force=True)
    assert not forced.left and (proc / "sys/kernel/core_pattern").read_text() == "core\n"
    assert not data.exists()


def test_uninstall_without_a_record(tmp_path):
    with pytest.raises(HostSetupError, match="nothing to uninstall"):
        uninstall(tmp_path / "data", root=tmp_path, proc=make_proc(tmp_path))


def test_wrapper_in_a_world_writable_directory_is_refused(short_tmp):
    tmp_path = short_tmp
    unsafe = tmp_path / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    data = unsafe / ("d" * 40)
    with pytest.raises(HostSetupError, match="writable by group or others"):
        install(data, handler_argv(data), root=tmp_path / "root", proc=make_proc(tmp_path))


def test_a_handler_others_can_replace_is_refused(short_tmp):
    handler = short_tmp / "handler"
    handler.write_text("#!/bin/sh\ncat >/dev/null\n")
    handler.chmod(0o757)
    proc = make_proc(short_tmp)
    before = tree(short_tmp)
    with pytest.raises(HostSetupError, match="the kernel would run .*handler as root.*writable by group or others"):
        install(short_tmp / "data", [str(handler), "%P"], root=short_tmp / "root", proc=proc)
    assert tree(short_tmp) == before  # refused before anything changed
    handler.chmod(0o755)
    again = install(short_tmp / "data", [str(handler), "%P"], root=short_tmp / "root", proc=short_tmp / "proc")
    assert again.warnings == ()


# ---- what runs as root must be root's alone (collector/hostsetup/trust.py) ----

NOBODY = 65534


def make_venv(where: Path) -> Path:
    """A real venv of this Python (no pip: fast), owned by root."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, capture_output=True)
    return where / "bin" / "python"


def site_packages(venv_python: Path) -> Path:
    return next((venv_python.parent.parent / "lib").glob("python3*/site-packages"))


def refused(short_tmp, argv=None, python=None, data=None) -> str:
    data = data or short_tmp / "data"
    proc = short_tmp / "proc" if (short_tmp / "proc").exists() else make_proc(short_tmp)
    before = tree(short_tmp)
    with pytest.raises(HostSetupError) as caught:
        install(data, argv or handler_argv(data), root=short_tmp / "root", proc=proc,
                python=str(python) if python else None)
    assert tree(short_tmp) == before, "refused only after changing something"
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_data_dir_reached_through_a_user_owned_symlink_is_refused(short_tmp):
    real = short_tmp / "real"
    real.mkdir(mode=0o700)
    link = short_tmp / "link"
    link.symlink_to(real)
    os.lchown(link, NOBODY, NOBODY)
    why = refused(short_tmp, data=link / "data")
    assert f"the data dir {link}/data is not root's alone: {link} is owned by uid {NOBODY}" in why
    os.lchown(link, 0, 0)  # the same symlink, root's: accepted
    install(link / "data", handler_argv(link / "data"), root=short_tmp / "root", proc=short_tmp / "proc")


def test_a_data_dir_under_a_user_owned_directory_is_refused(short_tmp):
    theirs = short_tmp / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    assert f"{theirs} is owned by uid {NOBODY}" in refused(short_tmp, data=theirs / "data")


def test_a_python_in_a_user_owned_directory_is_refused(short_tmp):
    bin_dir = short_tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    os.chown(bin_dir, NOBODY, NOBODY)
    argv = [str(bin_dir / "python3"), "-m", "collector.handler", *HANDLER[3:]]
    why = refused(short_tmp, argv=argv)
    assert why.startswith(f"the kernel would run {bin_dir}/python3 as root") and f"uid {NOBODY}" in why
    why = refused(short_tmp, python=bin_dir / "python3")  # the collector unit's Python too
    assert why.startswith(f"the collector service would run {bin_dir}/python3 as root")


def test_a_venv_another_user_can_change_is_refused(short_tmp):
    python = make_venv(short_tmp / "venv")
    argv = [str(python), "-m", "collector.handler", *HANDLER[3:]]
    install(short_tmp / "data", argv, root=short_tmp / "root", proc=make_proc(short_tmp), python=str(python))
    uninstall(short_tmp / "data", root=short_tmp / "root", proc=short_tmp / "proc")
    site = site_packages(python)
    site.chmod(0o777)
    assert f"{site} is writable by group or others" in refused(short_tmp, argv=argv)
    site.chmod(0o755)
    os.chown(short_tmp / "venv" / "pyvenv.cfg", NOBODY, NOBODY)
    assert f"pyvenv.cfg is owned by uid {NOBODY}" in refused(short_tmp, argv=argv)


def test_an_editable_source_dir_another_user_owns_is_refused(short_tmp):
    """What an editable install adds to sys.path (a .pth line) is checked,
    and so is every file of the packages the handler imports."""
    python = make_venv(short_tmp / "venv")
    src = short_tmp / "src"
    (src / "collector").mkdir(parents=True)
    (src / "collector" / "__init__.py").write_text("")
    (src / "collector" / "handler.py").write_text("")
    (site_packages(python) / "__editable__.collector.pth").write_text(f"{src}\n")
    argv = [str(python), "-m", "collector.handler", *HANDLER[3:]]
    install(short_tmp / "data", argv, root=short_tmp / "root", proc=make_proc(short_tmp))
    uninstall(short_tmp / "data", root=short_tmp / "root", proc=short_tmp / "proc")
    os.chown(src / "collector" / "handler.py", NOBODY, NOBODY)
    assert f"{src}/collector/handler.py is owned by uid {NOBODY}" in refused(short_tmp, argv=argv)
    os.chown(src / "collector" / "handler.py", 0, 0)
    os.chown(src, NOBODY, NOBODY)
    assert f"{src} is owned by uid {NOBODY}" in refused(short_tmp, argv=argv)


def test_a_pth_file_another_user_owns_is_refused_before_python_runs(short_tmp):
    """A .pth line starting with ``import`` runs when Python starts: install
    must refuse without running that Python as root even once."""
    python = make_venv(short_tmp / "venv")
    proof = short_tmp / "ran-as-root"
    pth = site_packages(python) / "zz-theirs.pth"
    pth.write_text(f"import pathlib; pathlib.Path({str(proof)!r}).touch()\n")
    os.chown(pth, NOBODY, NOBODY)
    argv = [str(python), "-m", "collector.handler", *HANDLER[3:]]
    assert f"{pth} is owned by uid {NOBODY}" in refused(short_tmp, argv=argv)
    assert not proof.exists()
