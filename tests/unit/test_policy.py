"""collector/policy.py: collector.toml, its defaults, sizes and refusals."""

import pytest

from collector.policy import CapturePolicy, PolicyError, load_policy, parse_size, policy_from_dict, setuid_rule


def test_limits_defaults_and_sizes(tmp_path):
    assert load_policy(tmp_path) == CapturePolicy() and load_policy(None) == CapturePolicy()
    assert parse_size("1G") == 1 << 30 and parse_size("512MiB") == 512 << 20 and parse_size(4096) == 4096
    assert parse_size("1.5k") == 1536 and parse_size("10GB") == 10 << 30
    for bad in ("lots", "-1", True, None, "G"):
        with pytest.raises(PolicyError):
            parse_size(bad)
    (tmp_path / "collector.toml").write_text('max_core_size = "2G"\nrate_limit = 3\nrate_window = 30\n'
                                             'secret_names = ["*PIN*"]\n')
    limits = load_policy(tmp_path)
    assert (limits.max_core_size, limits.rate_limit, limits.rate_window, limits.secret_names) == \
        (2 << 30, 3, 30.0, ("*PIN*",))
    assert limits.min_free_space == CapturePolicy().min_free_space


def test_limits_refuse_nonsense(tmp_path):
    for values in ({"max_core_size": "huge"}, {"rate_limit": -1}, {"rate_window": 0},
                   {"compression_level": 40}, {"compression_threads": -1}, {"secret_names": "*X*"},
                   {"colour": "blue"}):
        with pytest.raises(PolicyError):
            policy_from_dict(values)
    (tmp_path / "collector.toml").write_text("max_core_size = [\n")
    with pytest.raises(PolicyError, match="collector.toml"):
        load_policy(tmp_path)


def test_budget_rate_limits_and_setuid_settings(tmp_path):
    default = CapturePolicy()
    assert (default.max_core_seconds, default.host_rate_limit, default.setuid_cores) == \
        (60.0, 30, "analyze-then-delete")
    (tmp_path / "collector.toml").write_text('max_core_seconds = 5\nhost_rate_limit = 0\nsetuid_cores = "drop"\n')
    limits = load_policy(tmp_path)
    assert (limits.max_core_seconds, limits.host_rate_limit, limits.setuid_cores) == (5.0, 0, "drop")
    assert policy_from_dict({"max_core_seconds": 0.5}).max_core_seconds == 0.5
    for values in ({"max_core_seconds": 0}, {"max_core_seconds": -1}, {"max_core_seconds": "60"},
                   {"max_core_seconds": True}, {"host_rate_limit": -1}, {"host_rate_limit": 1.5},
                   {"setuid_cores": "delete"}, {"setuid_cores": True}):
        with pytest.raises(PolicyError):
            policy_from_dict(values)


def test_setuid_rule():
    assert setuid_rule(CapturePolicy(), 1) is None and setuid_rule(CapturePolicy(), None) is None
    assert setuid_rule(CapturePolicy(), 2).endswith("setuid_cores = analyze-then-delete")
    assert "dump mode 2" in setuid_rule(CapturePolicy(setuid_cores="drop"), 2)


def test_a_retention_table_leaves_the_capture_policy_in_force(tmp_path):
    # collector.pruning reads [retention] from the same file; the policy must not refuse it
    (tmp_path / "collector.toml").write_text('max_core_size = "1M"\n\n[retention]\nmax_age = "2d"\n')
    assert load_policy(str(tmp_path)).max_core_size == 1 << 20


def test_stack_core_settings():
    p = policy_from_dict({"no_core_kind": "none", "stack_cores": False, "stack_globals_max": "2M",
                          "stack_rate_limit": 3, "stack_host_rate_limit": 9, "stack_min_free_space": "64M"})
    assert (p.no_core_kind, p.stack_cores, p.stack_globals_max) == ("none", False, 2 << 20)
    assert (p.stack_rate_limit, p.stack_host_rate_limit, p.stack_min_free_space) == (3, 9, 64 << 20)
    d = CapturePolicy()
    assert (d.no_core_kind, d.stack_cores, d.stack_rate_limit) == ("stack", True, 30)
    for bad in ({"no_core_kind": "full"}, {"stack_cores": "yes"}, {"stack_rate_limit": -1},
                {"stack_min_free_space": "lots"}):
        with pytest.raises(PolicyError):
            policy_from_dict(bad)


def test_setuid_drop_wins_over_every_rule_that_would_keep_a_stack_core(tmp_path):
    # no_core and low disk space keep stack cores; a set-uid process under "drop" keeps nothing
    import os

    from collector.policy import decide

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for policy in (CapturePolicy(setuid_cores="drop", no_core=("*/su*",)),
                       CapturePolicy(setuid_cores="drop", min_free_space=1 << 60)):
            kept = decide(policy, fd, "b1", "/usr/bin/sudo", 2, lambda: "key", [])
            assert kept.kind == "none" and "dump mode 2" in kept.why
        assert decide(CapturePolicy(setuid_cores="drop", no_core=("*/su*",)), fd, "b2", "/usr/bin/sudo", 1,
                      lambda: "key", []).kind == "stack"
    finally:
        os.close(fd)
