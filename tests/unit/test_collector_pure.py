"""The collector's pure parts: secret masking, cgroup parsing, bundle meta,
limits, the rate-limit decision, argument parsing and hostile names. The spool
helpers run on a temporary directory (milliseconds)."""

import json
import os

import pytest

from collector import ratelimit
from collector.bundle import BundleMeta, bundle_id, display, is_bundle_id
from collector.cgroup import ContainerRef, container_from_cgroup, is_container_id
from collector.corepattern import PatternError, core_pattern
from collector.handler import Usage, parse_args
from collector.process import mapped_paths, parse_environ
from collector.policy import CapturePolicy, PolicyError, load_policy, parse_size, policy_from_dict
from collector.secrets import MASK, is_secret_name, mask_argv, mask_environ, mask_text
from collector.spool import (SpoolError, create_bundle, finished_bundles, is_done, mark_done, open_spool,
                             read_meta, unfinished_bundles, write_meta)

CID = "3f1c8e8b2a4d4c6e9b0a7f5e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CID2 = "a" * 64
POD = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"


# ---- secrets ----

def test_secret_names_case_insensitive():
    for name in ("DB_PASSWORD", "db_password", "MYSQL_ROOT_PASSWD", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
                 "api_key", "GOOGLE_APPLICATION_CREDENTIALS", "HTTP_AUTHORIZATION", "PgPassword"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "DATABASE_URL", "LANG", "PGHOST"):
        assert not is_secret_name(name), name


def test_environment_masked():
    env = {"DB_PASSWORD": "passwd123", "DATABASE_URL": "postgres://app:hunter2@db/x", "PATH": "/usr/bin",
           "REDIS_URL": "redis://:s3cr3t@cache:6379/0", "GITHUB_TOKEN": "ghp_abc",
           "DSN": "host=db user=app password=hunter3 dbname=x",
           "CALLBACK": "https://api.example.com/hook?x=1&access_token=tok42&y=2",
           "WEIRD_URL": "https://u:p@ss:w@rd@host:8443/path?q=1"}
    masked = mask_environ(env)
    assert masked["DB_PASSWORD"] == MASK and masked["GITHUB_TOKEN"] == MASK
    assert masked["DATABASE_URL"] == f"postgres://app:{MASK}@db/x"
    assert masked["REDIS_URL"] == f"redis://:{MASK}@cache:6379/0"
    assert masked["DSN"] == f"host=db user=app password={MASK} dbname=x"
    assert masked["CALLBACK"] == f"https://api.example.com/hook?x=1&access_token={MASK}&y=2"
    assert masked["WEIRD_URL"] == f"https://u:{MASK}@host:8443/path?q=1"
    assert masked["PATH"] == "/usr/bin"
    text = json.dumps(masked)
    for secret in ("passwd123", "hunter2", "hunter3", "s3cr3t", "ghp_abc", "tok42", "p@ss", "rd@"):
        assert secret not in text, secret


def test_masking_leaves_harmless_text_alone():
    for text in ("http://example.com:8080/a@b", "https://host/path", "user@example.com", "a=b c=d",
                 "/usr/lib/x86_64-linux-gnu/libc.so.6", "postgres://app@db/x"):
        assert mask_text(text) == text


def test_argv_masked():
    argv = ["server", "--password=hunter2", "--token", "tok42", "-v", "--db", "postgres://a:pw9@h/d",
            "-Dapi.key=k3y", "--auth-file", "/etc/x", "--port", "80"]
    out = mask_argv(argv)
    assert out == ["server", f"--password={MASK}", "--token", MASK, "-v", "--db", f"postgres://a:{MASK}@h/d",
                   f"-Dapi.key={MASK}", "--auth-file", MASK, "--port", "80"]


def test_secret_patterns_configurable():
    env = {"MY_THING": "x", "DB_PASSWORD": "y"}
    assert mask_environ(env, ("MY_*",)) == {"MY_THING": MASK, "DB_PASSWORD": "y"}
    assert mask_environ(env, ()) == env


# ---- cgroup ----

@pytest.mark.parametrize("text, runtime, pod", [
    # Docker, cgroup v1, cgroupfs driver
    (f"12:memory:/docker/{CID}\n11:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n0::/\n", "docker", None),
    # Docker, cgroup v2, cgroupfs driver
    (f"0::/docker/{CID}\n", "docker", None),
    # Docker, cgroup v2, systemd driver
    (f"0::/system.slice/docker-{CID}.scope\n", "docker", None),
    # Docker, hybrid (v1 controllers + v2), systemd driver
    (f"5:devices:/system.slice/docker-{CID}.scope\n0::/system.slice/docker-{CID}.scope\n", "docker", None),
    # containerd (ctr / nerdctl) with cgroupfs: <namespace>/<id>
    (f"0::/default/{CID}\n", "containerd", None),
    (f"0::/containerd/{CID}\n", "containerd", None),
    (f"0::/user.slice/nerdctl-{CID}.scope\n", "containerd", None),
    # Kubernetes, cgroupfs driver (v1), burstable and guaranteed
    (f"4:memory:/kubepods/burstable/pod{POD}/{CID}\n", "kubernetes", POD),
    (f"4:memory:/kubepods/pod{POD}/{CID}\n", "kubernetes", POD),
    # Kubernetes, systemd driver, containerd / cri-o / docker
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope\n", "containerd", POD),
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice/"
     f"crio-{CID}.scope\n", "cri-o", POD),
    (f"0::/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/docker-{CID}.scope\n", "docker", POD),
    # Podman
    (f"0::/machine.slice/libpod-{CID}.scope/container\n", "podman", None),
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope\n", "podman", None),
])
def test_container_layouts(text, runtime, pod):
    ref = container_from_cgroup(text)
    assert ref is not None and ref.id == CID and ref.runtime == runtime and ref.pod_uid == pod
    assert is_container_id(ref.id)


def test_not_a_container():
    for text in ("0::/\n", "0::/user.slice/user-0.slice/session-3.scope\n",
                 "0::/system.slice/docker.service\n", "12:memory:/\n", "",
                 f"0::/system.slice/crio-conmon-{CID}.scope\n",  # the monitor, not the container
                 f"0::/docker/{CID.upper()}\n",  # ids are lowercase
                 f"0::/docker/{CID[:-1]}\n", f"0::/docker/{CID}0\n",  # 63 and 65 digits
                 f"0::/docker/{CID[:-1]}g\n", f"0::/somewhere/{CID}\n", "garbage\n\x00\n"):
        assert container_from_cgroup(text) is None, text


def test_nested_containers_give_the_outer_one():
    ref = container_from_cgroup(f"0::/docker/{CID}/docker/{CID2}\n")
    assert ref == ContainerRef("docker", CID, None, f"/docker/{CID}/docker/{CID2}")


def test_container_id_validation():
    assert is_container_id(CID)
    for bad in (CID.upper(), CID[:12], CID + "\n", f"../{CID[3:]}", None, 42, "g" * 64):
        assert not is_container_id(bad)


# ---- bundle meta ----

def _meta(**kw) -> BundleMeta:
    values = dict(id="1795619035-11265-0a1b2c3d", pid=11265, signal=11, crash_time=1795619035,
                  host_time=1795619035.25, tid=11265, host_tid=11265, uid=0, gid=0, dump_mode=1,
                  hostname="vm", exe="/usr/sbin/haproxy", comm="haproxy",
                  cmdline=("haproxy", "-f", "/etc/haproxy/haproxy.cfg"), cwd="/",
                  environ={"PATH": "/usr/bin", "DB_PASSWORD": MASK}, cgroup=f"0::/docker/{CID}",
                  container_id=CID, container_runtime="docker",
                  namespaces={"pid": "pid:[4026531836]", "mnt": "mnt:[4026531841]"},
                  maps=("/usr/sbin/haproxy", "/usr/lib/x86_64-linux-gnu/libc.so.6"), core_file="core.zst",
                  core_size=123456, core_compressed_size=2345, problems=("one", "two"))
    values.update(kw)
    return BundleMeta(**values)


def test_meta_round_trip():
    meta = _meta()
    assert BundleMeta.from_json(meta.to_json()) == meta
    dropped = _meta(core_file=None, core_compressed_size=None, dropped="rate limit", container_id=None)
    assert BundleMeta.from_json(dropped.to_json()) == dropped
    data = json.loads(meta.to_json())
    assert data["cmdline"] == list(meta.cmdline) and data["core_file"] == "core.zst"
    data["a_field_from_the_future"] = 1  # newer writers, older readers
    assert BundleMeta.from_dict(data) == meta


def test_meta_rejects_bad_input():
    good = json.loads(_meta().to_json())
    for key, value in (("id", "../../etc"), ("id", "1-2-3"), ("pid", "12"), ("cmdline", "ls -l"),
                       ("container_id", "../x"), ("environ", ["A=b"]), ("problems", [1])):
        with pytest.raises(ValueError):
            BundleMeta.from_dict({**good, key: value})
    with pytest.raises(ValueError):
        BundleMeta.from_dict({k: v for k, v in good.items() if k != "signal"})
    with pytest.raises(ValueError):
        BundleMeta.from_json("{not json")


# ---- hostile names ----

HOSTILE = [b"evil\nname", b"..", b"../../etc/passwd", b"a/b", b"\xff\xfe bad utf8", b"-s", b"\x1b[31mred",
           b"x" * 300, b"caf\xc3\xa9"]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_names_stay_in_meta(raw):
    name = display(raw)
    assert "\udcff" not in name and name.encode("utf-8")  # always encodable
    meta = _meta(exe="/tmp/" + name, comm=name, cmdline=(name,))
    text = meta.to_json()
    assert text.isascii() and len(text.splitlines()) == len(meta.to_json().splitlines())
    assert "\n" not in json.dumps(meta.exe)  # a newline is escaped
    back = BundleMeta.from_json(text)
    assert back.exe == meta.exe and back.comm == name
    # the bundle id never contains anything of the name
    bid = bundle_id(1795619035, 4242, "0a1b2c3d")
    assert bid == "1795619035-4242-0a1b2c3d" and is_bundle_id(bid)


def test_display_escapes_non_utf8():
    assert display(b"\xff\xfeab") == "\\xff\\xfeab"
    assert display(b"caf\xc3\xa9") == "café"
    assert display(os.fsdecode(b"x\xffy")) == "x\\xffy"  # argv decoded with surrogateescape


def test_bundle_ids():
    assert bundle_id(5, 1, "deadbeef") == "0000000005-1-deadbeef"
    assert sorted([bundle_id(1795619036, 2, "00000000"), bundle_id(1795619035, 99999, "ffffffff")])[0] \
        .startswith("1795619035")
    for bad in ("..", "1795619035-1-DEADBEEF", "1795619035-1-deadbeef/..", "x1795619035-1-deadbeef", None):
        assert not is_bundle_id(bad)
    with pytest.raises(ValueError):
        bundle_id(1, 2, "../x")


def test_handler_arguments():
    a = parse_args(["-d", "/data", "--spool=/sp", "123", "7", "456", "11", "1795619035", "1000", "100", "1",
                    "3", "!usr!bin!x", "my", "prog"])
    assert (a.pid, a.tid, a.host_tid, a.signal, a.crash_time, a.uid, a.gid, a.dump_mode, a.pidfd) == \
        (123, 7, 456, 11, 1795619035, 1000, 100, 1, 3)
    assert a.data_dir == "/data" and a.spool == "/sp" and a.exe_bang == "!usr!bin!x" and a.comm == "my prog"
    # %F on a kernel without it: empty; a comm that looks like an option is a comm
    a = parse_args(["1", "1", "1", "6", "2", "0", "0", "2", "", "!x", "-s"])
    assert a.pidfd is None and a.comm == "-s" and a.spool is None
    for bad in ([], ["1", "2"], ["x", "1", "1", "6", "2", "0", "0", "1", "", "!x", "c"],
                ["--spool", "relative", "1", "1", "1", "6", "2", "0", "0", "1", "", "!x", "c"],
                ["--bogus", "1", "1", "1", "6", "2", "0", "0", "1", "", "!x", "c"]):
        with pytest.raises(Usage):
            parse_args(bad)


def test_proc_parsers():
    env = parse_environ(b"A=1\0B=x=y\0\xff=\xfe\0EMPTY=\0A=2\0")
    assert env == {"A": "1", "B": "x=y", "\\xff": "\\xfe", "EMPTY": ""}
    maps = mapped_paths(
        b"55d0-55d1 r--p 00000000 fe:00 12 /usr/bin/my prog\n"
        b"55d1-55d2 r-xp 00001000 fe:00 12 /usr/bin/my prog\n"
        b"7f00-7f01 rw-p 00000000 00:00 0 \n"
        b"7f01-7f02 r-xp 00000000 fe:00 13 /usr/lib/libc.so.6\n"
        b"7ffc-7ffd rw-p 00000000 00:00 0                          [stack]\n"
        b"7f03-7f04 r-xp 00000000 fe:00 14 /tmp/gone (deleted)\n")
    assert maps == ["/usr/bin/my prog", "/usr/lib/libc.so.6", "/tmp/gone (deleted)"]


# ---- core_pattern ----

def test_core_pattern_string():
    p = core_pattern("/opt/ct/bin/python", data_dir="/var/lib/coretriage")
    assert p == ("|/opt/ct/bin/python -I -m collector.handler -d /var/lib/coretriage "
                 "%P %i %I %s %t %u %g %d %F %E %e")
    with pytest.raises(PatternError):
        core_pattern("/opt/ct/bin/python", spool="/a dir/spool")  # the kernel cannot quote
    with pytest.raises(PatternError):
        core_pattern("python")
    with pytest.raises(PatternError):
        core_pattern("/opt/ct/bin/python", spool="/" + "x" * 80)  # the kernel would cut it


# ---- limits ----

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


# ---- rate limit ----

def test_rate_limit_decision():
    state: dict = {}
    kept = []
    for i in range(5):
        ok, state = ratelimit.decide(state, "k", 1000.0 + i, limit=3, window=60)
        kept.append(ok)
    assert kept == [True, True, True, False, False]
    ok, state = ratelimit.decide(state, "other", 1005.0, limit=3, window=60)
    assert ok  # per executable
    ok, state = ratelimit.decide(state, "k", 1061.0, limit=3, window=60)
    assert ok  # the first one left the window
    assert ratelimit.decide({}, "k", 1.0, limit=0, window=60)[0] is False  # 0: no cores at all
    ok, _ = ratelimit.decide({"k": "junk", 3: [1]}, "k", 5.0, limit=1, window=60)  # corrupt state
    assert ok


def test_rate_limit_state_file(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        results = [ratelimit.check(fd, "/usr/bin/x", 2, 60, now=100.0 + i)[0] for i in range(3)]
        assert results == [True, True, False]
        assert ratelimit.check(fd, "/usr/bin/y", 2, 60, now=103.0) == (True, None)
        (tmp_path / ratelimit.STATE).write_text("{garbage")
        assert ratelimit.check(fd, "/usr/bin/x", 2, 60, now=104.0) == \
            (True, "rate limit state was corrupt and was reset")
        assert oct((tmp_path / ratelimit.STATE).stat().st_mode & 0o777) == "0o600"
    finally:
        os.close(fd)


# ---- spool ----

def test_spool_bundles(tmp_path):
    spool = tmp_path / "spool"
    fd = open_spool(spool)
    try:
        assert oct(spool.stat().st_mode & 0o777) == "0o700"
        ids = ["1795619036-20-00000001", "1795619035-99-00000002", "1795619037-5-00000003"]
        for bid in ids:
            bfd = create_bundle(fd, bid)
            try:
                if bid != ids[2]:  # the last one is still being written
                    write_meta(bfd, _meta(id=bid))
            finally:
                os.close(bfd)
        with pytest.raises(FileExistsError):
            create_bundle(fd, ids[0])
        with pytest.raises(SpoolError):
            create_bundle(fd, "../escape")
    finally:
        os.close(fd)
    (spool / "not-a-bundle").mkdir()
    (spool / "1795619038-1-00000004").symlink_to(spool / ids[0])
    found = list(finished_bundles(spool))
    assert [p.name for p in found] == sorted(ids[:2])
    assert [p.name for p in unfinished_bundles(spool)] == [ids[2]]
    meta = read_meta(found[0])
    assert meta.id == found[0].name and meta.exe == "/usr/sbin/haproxy"
    assert oct((found[0] / "meta.json").stat().st_mode & 0o777) == "0o600"
    assert not list(found[0].glob(".meta.json.tmp-*"))
    mark_done(found[0])
    mark_done(found[0])  # idempotent
    assert is_done(found[0])
    assert [p.name for p in finished_bundles(spool)] == [found[1].name]
    assert len(list(finished_bundles(spool, include_done=True))) == 2
    assert list(finished_bundles(tmp_path / "missing")) == []


def test_spool_refuses_symlink_and_foreign_modes(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SpoolError, match="symlink"):
        open_spool(link)
    open_dir = tmp_path / "world"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(SpoolError, match="refused"):
        open_spool(open_dir)


def test_meta_of_another_bundle_refused(tmp_path):
    spool = tmp_path / "spool"
    fd = open_spool(spool)
    bfd = create_bundle(fd, "1795619035-1-00000001")
    write_meta(bfd, _meta(id="1795619035-2-00000002"))
    os.close(bfd)
    os.close(fd)
    with pytest.raises(ValueError, match="belongs to"):
        read_meta(spool / "1795619035-1-00000001")


def test_bundle_names_and_paths(tmp_path):
    from collector.bundle import Bundle

    b = Bundle(tmp_path / "1700000000-42-0badf00d")
    assert b.id == "1700000000-42-0badf00d"
    assert (b.core.name, b.meta.name, b.root.name) == ("core.zst", "meta.json", "root")
    assert not b.is_finished() and not b.is_done() and not b.was_evicted()
    b.dir.mkdir()
    b.meta.write_text("{}")
    (b.dir / Bundle.DONE).touch()
    (b.dir / Bundle.EVICTED).touch()
    assert b.is_finished() and b.is_done() and b.was_evicted()


def test_one_status_parser_for_proc_and_fdinfo():
    from collector.process import parse_status

    text = "Name:\tsleep\nUid:\t0\t0\t0\t0\nNSpid:\t4242\t1\nno colon here\n"
    assert parse_status(text) == parse_status(text.encode()) == {
        "Name": "sleep", "Uid": "0\t0\t0\t0", "NSpid": "4242\t1"}
