"""coretriage/config.py: coretriage.toml and the environment."""

import pytest


def test_config_from_file_and_env(tmp_path, monkeypatch):
    from coretriage.config import ConfigError, load_config
    (tmp_path / "coretriage.toml").write_text('gdb_timeout = 5\nbroker_url = "redis://localhost:6379/0"\n')
    monkeypatch.setenv("CORETRIAGE_SHOW_LITERALS", "yes")
    c = load_config(tmp_path)
    assert c.gdb_timeout == 5.0 and c.broker_url.startswith("redis://") and c.show_literals
    assert c.database_url == f"sqlite:///{tmp_path}/coretriage.db"
    (tmp_path / "coretriage.toml").write_text("gdb_timeuot = 5\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(tmp_path)
