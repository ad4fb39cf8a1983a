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


def test_web_settings(tmp_path, monkeypatch):
    from coretriage.config import ConfigError, load_config

    c = load_config(tmp_path)
    assert (c.secure_cookies, c.trusted_proxies, c.session_idle, c.session_lifetime) == (False, 0, 7200.0, 86400.0)
    assert (c.login_failures_per_user, c.login_failures_per_address, c.login_window, c.token_days) == (5, 20, 900.0, 90)
    (tmp_path / "coretriage.toml").write_text("secure_cookies = true\ntrusted_proxies = 1\nsession_idle = 600\n")
    monkeypatch.setenv("CORETRIAGE_TOKEN_DAYS", "30")
    c = load_config(tmp_path)
    assert c.secure_cookies is True and c.trusted_proxies == 1 and c.session_idle == 600.0 and c.token_days == 30
    monkeypatch.delenv("CORETRIAGE_TOKEN_DAYS")
    for bad in ('secure_cookies = "maybe"', "trusted_proxies = -1", 'session_idle = "soon"', "token_days = true"):
        (tmp_path / "coretriage.toml").write_text(bad + "\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_config(tmp_path)


def test_queue_and_worker_settings(tmp_path, monkeypatch):
    import socket

    from coretriage.config import ConfigError, load_config
    from coretriage.tasks import make_celery, time_limits

    c = load_config(tmp_path)
    assert c.queue_name == f"coretriage.{socket.gethostname()}" and c.worker_concurrency == 2
    (tmp_path / "coretriage.toml").write_text('queue_name = "coretriage.central"\nworker_concurrency = 4\n'
                                              'gdb_timeout = 30\nbroker_url = "redis://localhost:1/0"\n')
    c = load_config(tmp_path)
    assert (c.queue_name, c.worker_concurrency) == ("coretriage.central", 4)
    monkeypatch.setenv("CORETRIAGE_QUEUE_NAME", "fleet")
    c = load_config(tmp_path)
    assert c.queue_name == "fleet"
    app = make_celery(c)  # nothing connects before a task is sent
    assert app.conf.task_default_queue == "fleet" and app.conf.worker_concurrency == 4
    assert (app.conf.task_soft_time_limit, app.conf.task_time_limit) == time_limits(c) == (90.0, 120.0)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.broker_transport_options["visibility_timeout"] <= 30
    monkeypatch.delenv("CORETRIAGE_QUEUE_NAME")
    for bad in ('queue_name = ""', 'queue_name = "two words"', "queue_name = 3", "worker_concurrency = 0"):
        (tmp_path / "coretriage.toml").write_text(bad + "\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_config(tmp_path)
