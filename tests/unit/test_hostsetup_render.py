"""collector/hostsetup/render.py: the files host-setup writes (sysctl, systemd
unit and drop-in, the handler's wrapper script), every placeholder filled."""

import re
import subprocess
from importlib.resources import files
from pathlib import Path

from collector.hostsetup.render import (TEMPLATES, collector_unit, limitcore_dropin, parse_sysctl_conf, sysctl_conf,
                                        systemd_quote, wrapper_script)


PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def test_wrapper_script_passes_the_kernel_arguments_through(tmp_path):
    script = tmp_path / "w"
    script.write_text(wrapper_script(["/usr/bin/printf", "%s|", "a b", "it's"]))
    script.chmod(0o755)
    out = subprocess.run([str(script), "1234", "x y"], capture_output=True, text=True, check=True).stdout
    assert out == "a b|it's|1234|x y|"
    assert script.read_text().startswith("#!/bin/sh\n")


# --- rendered files ----------------------------------------------------------------

def test_sysctl_file_round_trips():
    pattern = "|/var/lib/coretriage/bin/coretriage-core-handler %P %i %s"
    text = sysctl_conf(pattern, 16)
    assert parse_sysctl_conf(text) == {"kernel.core_pattern": pattern, "kernel.core_pipe_limit": "16"}
    assert "@CORE" not in text


def test_dropin_and_unit():
    assert "[Service]\nLimitCORE=infinity\n" in limitcore_dropin()
    unit = collector_unit("/opt/ct/.venv/bin/python", Path("/srv/core dumps/100%"))
    assert 'ExecStart=/opt/ct/.venv/bin/python -m coretriage.cli --data-dir "/srv/core dumps/100%%" ' \
           'collector run\n' in unit
    assert "WantedBy=multi-user.target" in unit and not PLACEHOLDER.search(unit)


def test_systemd_quoting():
    assert systemd_quote("/plain/path") == "/plain/path"
    assert systemd_quote('a "b"') == '"a \\"b\\""'
    assert systemd_quote("$HOME") == '"$$HOME"'


def test_every_template_placeholder_is_filled():
    names = sorted(p.name for p in files(TEMPLATES).iterdir())
    assert {"50-coretriage.conf.in", "limitcore.conf", "coretriage-collector.service.in",
            "coretriage-core-handler.in"} <= set(names)
    for text in (sysctl_conf("|/x %P"), limitcore_dropin(), collector_unit("/p", Path("/d")),
                 wrapper_script(["/x"])):
        assert not PLACEHOLDER.search(text)  # (systemd's @groups and the shell's "$@" are not ours)


def test_collector_unit_runs_the_socket_server_in_socket_mode():
    from pathlib import Path

    from collector.hostsetup.render import collector_unit

    assert "collector run --socket" in collector_unit("/usr/bin/python3", Path("/var/lib/coretriage"), socket=True)
    assert "--socket" not in collector_unit("/usr/bin/python3", Path("/var/lib/coretriage"))
