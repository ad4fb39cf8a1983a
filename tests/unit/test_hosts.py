"""Host names, tokens, heartbeat reports and the markers of the host list
(coretriage.hosts); what a host's upload may name (coretriage.receive)."""

import pytest

from collector.bundle import BundleMeta
from coretriage.hosts import HostError, HostRow, check_name, format_hosts, is_host_token, new_host_token, parse_report
from coretriage.receive import IngestRefused, _meta_matches_parts, _parts, manifest_entries

SHA = "a" * 64


def test_host_tokens_are_not_user_tokens():
    from coretriage.users import new_token

    assert is_host_token(new_host_token()) and not is_host_token(new_token())
    assert new_host_token() != new_host_token()


@pytest.mark.parametrize("name", ["web-1", "db.prod.example", "A_b"])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a/b", "../x", "a b", "x" * 64, "é"])
def test_bad_names(name):
    with pytest.raises(HostError):
        check_name(name)


def test_a_report_is_checked_field_by_field():
    report = parse_report({"version": "1.0", "core_pattern_ours": True, "spool_bytes": 10, "waiting": 0,
                           "last_crash_at": 5, "doctor": [{"name": "core_pattern", "status": "OK", "message": "x"}]})
    assert report["last_crash_at"] == 5.0 and report["doctor"][0]["status"] == "OK"
    for bad in ([], {"waiting": -1}, {"waiting": True}, {"spool_bytes": 1.5}, {"core_pattern_ours": "yes"},
                {"last_crash_at": float("nan")}, {"doctor": [{"name": "x", "status": "MAYBE"}]}, {"other": 1},
                {"version": "x" * 65}):
        with pytest.raises(HostError) as exc:
            parse_report(bad)
        assert "\n" not in str(exc.value)


def test_markers():
    now = 1000.0
    fresh = HostRow("a", 0, last_heartbeat=990, report={"interval": 10, "core_pattern_ours": True})
    assert fresh.markers(now) == []
    assert HostRow("b", 0, last_heartbeat=960, report={"interval": 10}).markers(now) == ["STALE"]
    assert HostRow("c", 0).markers(now) == ["STALE"]  # never a heartbeat
    replaced = HostRow("d", 0, last_heartbeat=999, report={"core_pattern_ours": False})
    assert replaced.markers(now) == ["PATTERN REPLACED"]
    assert HostRow("e", 0, revoked_at=5).markers(now) == ["REVOKED"]
    text = format_hosts([fresh, replaced], now)
    assert "PATTERN REPLACED" in text.splitlines()[2] and "OTHER" in text


@pytest.mark.parametrize("path", ["/../etc/passwd", "lib.so", "/a/./b", "/a//b", "/a/..", "/a\0", "/", ""])
def test_manifest_paths_are_refused(path):
    with pytest.raises(IngestRefused) as exc:
        manifest_entries({"files": [{"path": path, "sha256": SHA}]})
    assert exc.value.status == 400


def test_manifest_refuses_a_file_that_is_also_a_directory():
    with pytest.raises(IngestRefused):
        manifest_entries({"files": [{"path": "/a/b", "sha256": SHA}, {"path": "/a/b/c", "sha256": SHA}]})
    assert [e["path"] for e in manifest_entries({"files": [{"path": "/lib/x.so", "sha256": SHA}]})] == ["/lib/x.so"]


def test_parts_and_meta_must_agree():
    meta = BundleMeta(id="1795619000-7-00c0ffee", pid=7, signal=11, crash_time=1795619000, host_time=0,
                      core_file="core.zst", core_size=10)
    good = _parts({"core.zst": {"sha256": SHA, "size": 3}})
    _meta_matches_parts(meta, good)
    for bad in ({"core.zst": {"sha256": SHA, "size": -1}}, {"x": {"sha256": SHA, "size": 1}}, [1]):
        with pytest.raises(IngestRefused):
            _parts(bad)
    with pytest.raises(IngestRefused):
        _meta_matches_parts(meta, {})
    with pytest.raises(IngestRefused):
        _meta_matches_parts(meta, {**good, "stack.zst": (SHA, 1)})


def test_upload_settings_from_toml_and_environment(tmp_path, monkeypatch):
    from coretriage.config import load_config

    (tmp_path / "coretriage.toml").write_text('server_url = "https://ct.example"\nupload_bandwidth = 1000\n')
    monkeypatch.setenv("CORETRIAGE_SERVER_TOKEN", "cth_do-not-print")
    monkeypatch.setenv("CORETRIAGE_UPLOAD_CONCURRENCY", "3")
    config = load_config(tmp_path)
    assert (config.server_url, config.server_token, config.upload_bandwidth, config.upload_concurrency) == (
        "https://ct.example", "cth_do-not-print", 1000, 3)
    assert "cth_do-not-print" not in repr(config)
