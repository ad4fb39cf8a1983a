"""Pure parts of symbols: os-release parsing, which debuginfod servers an
analysis asks (the setting, the environment, "auto" by distribution), the
settings, and the symbol store's layout and misses."""

import os
import time

import pytest

from collector.osrelease import describe, parse
from coretriage.config import ConfigError, load_config
from coretriage.debuginfod import PUBLIC_SERVERS, auto_servers, servers
from coretriage.symbols import SymbolError, SymbolStore

BOOKWORM = '''PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
HOME_URL="https://www.debian.org/"
'''


def test_os_release_keeps_the_fields_it_uses_unquoted_and_printable():
    got = parse(BOOKWORM)
    assert got == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "VERSION_ID": "12", "ID": "debian"}
    assert describe(got) == "Debian GNU/Linux 12 (bookworm)"
    assert describe({"ID": "alpine", "VERSION_ID": "3.19.1"}) == "alpine 3.19.1"
    hostile = parse('ID="x\x1b[31m"\nPRETTY_NAME=' + "A" * 5000 + "\nEVIL=1\n")
    assert hostile["ID"] == "x[31m" and len(hostile["PRETTY_NAME"]) == 120 and "EVIL" not in hostile
    assert describe(None) is None and describe({}) is None


@pytest.mark.parametrize("os_release, server", [
    ({"ID": "debian"}, "https://debuginfod.debian.net"),
    ({"ID": "ubuntu", "ID_LIKE": "debian"}, "https://debuginfod.ubuntu.com"),
    ({"ID": "fedora"}, "https://debuginfod.fedoraproject.org"),
    ({"ID": "arch"}, "https://debuginfod.archlinux.org"),
    ({"ID": "opensuse-tumbleweed", "ID_LIKE": "opensuse suse"}, "https://debuginfod.opensuse.org"),
    ({"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}, "https://debuginfod.ubuntu.com"),
])
def test_auto_picks_the_distributions_public_server(os_release, server):
    assert auto_servers(os_release) == (server,)
    assert servers("auto", os_release) == (server,)


def test_setting_first_then_environment_and_auto_without_a_known_os_is_nothing():
    env = {"DEBUGINFOD_URLS": "https://env.example/ http://two.example"}
    assert servers(None, None, env) == ("https://env.example", "http://two.example")
    assert servers("https://set.example", None, env) == ("https://set.example",)
    assert servers("", None, env) == ()  # set to nothing: nothing, not the environment
    assert servers("auto", {"ID": "alpine"}, env) == ()
    assert servers("auto", None, env) == ()
    assert servers("https://mine.example auto file:///etc", {"ID": "debian"}, {}) == (
        "https://mine.example", PUBLIC_SERVERS["debian"])


def test_symbol_settings_from_the_toml(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "coretriage.toml").write_text('debuginfod_urls = "auto"\ndebuginfod_timeout = 3\n'
                                          "symbol_cache_size = 1000000\nsymbol_miss_ttl = 60\n")
    c = load_config(data)
    assert (c.debuginfod_urls, c.debuginfod_timeout, c.symbol_cache_size, c.symbol_miss_ttl) == \
        ("auto", 3.0, 1000000, 60.0)
    assert c.symbols_dir == data.absolute() / "symbols"
    (data / "coretriage.toml").write_text("debuginfod_timeout = -1\n")
    with pytest.raises(ConfigError):
        load_config(data)


def test_store_layout_is_gdbs_and_misses_expire(tmp_path):
    s = SymbolStore(tmp_path / "symbols", miss_ttl=100)
    bid = "ab" + "12" * 19
    assert s.path(bid) == tmp_path / "symbols/.build-id/ab" / ("12" * 19 + ".debug")
    assert s.path(bid, "executable") == tmp_path / "symbols/.build-id/ab" / ("12" * 19)
    for bad in ("../../etc/passwd", "AB" * 20, "ab", "ab/" + "1" * 30):
        with pytest.raises(SymbolError):
            s.path(bad)
    assert s.lookup("../../etc/passwd") is None
    assert not s.missed_recently(bid)
    s.note_miss(bid)
    assert s.missed_recently(bid)
    os.utime(s.root / "misses" / bid, (time.time() - 200,) * 2)
    assert not s.missed_recently(bid)
    s.note_miss("not-a-build-id/../../x")
    assert sorted(p.name for p in (s.root / "misses").iterdir()) == [bid]
