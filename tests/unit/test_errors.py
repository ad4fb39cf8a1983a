"""Every error a user can meet derives from the one base the CLI catches,
so each prints as one line instead of ``TypeName: message``."""

from __future__ import annotations

import pytest

from analyzer.errors import CoretriageError
from analyzer.gdb import GdbError, GdbTimeout
from collector.corepattern import PatternError
from collector.hostsetup.errors import DaemonJsonError, HostSetupError, OtherHandlerError
from collector.policy import PolicyError
from collector.spool import SpoolError
from coretriage.cli import main
from coretriage.commands import UserError
from coretriage.config import ConfigError
from coretriage.ingest import IngestError
from coretriage.store import NotFound, SchemaError


@pytest.mark.parametrize("error", [GdbError, GdbTimeout, PatternError, SpoolError, PolicyError, HostSetupError,
                                   OtherHandlerError, DaemonJsonError, ConfigError, IngestError, NotFound,
                                   SchemaError, UserError])
def test_user_errors_share_the_base(error):
    assert issubclass(error, CoretriageError)


def test_a_bad_setting_is_one_line(tmp_path, capsys):
    (tmp_path / "coretriage.toml").write_text("gdb_timeout = [\n")
    assert main(["--data-dir", str(tmp_path), "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("coretriage: error: ") and err.count("\n") == 1 and "coretriage.toml" in err
