"""analyzer/secrets.py: secret names, masking environments, argv and text."""

import json

import pytest

from analyzer.secrets import DEFAULT_SECRET_NAMES, MASK, is_secret_name, mask_argv, mask_environ, mask_psargs, mask_text


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


# ---- issue 8, finding 9: every spelling, in argv, in environment values and in a joined command line ----

# (argv, the secret values in it): one per spelling the review found passing through
SPELLINGS = [
    (["mysql", "-uroot", "-pS3cretMy", "shop"], ["S3cretMy"]),
    (["/usr/bin/mysqldump", "-pS3cretDump", "db"], ["S3cretDump"]),
    (["sudo", "mariadb-admin", "-pS3cretMaria", "status"], ["S3cretMaria"]),
    (["server", "--password", "S3cretPw"], ["S3cretPw"]),
    (["server", "--db-pass", "S3cretPass"], ["S3cretPass"]),
    (["curl", "-u", "alice:S3cretCurl", "https://h/x"], ["S3cretCurl"]),
    (["curl", "-ualice:S3cretCurl2", "--user=bob:S3cretCurl3", "--proxy-user", "p:S3cretProxy", "https://h/"],
     ["S3cretCurl2", "S3cretCurl3", "S3cretProxy"]),
    (["curl", "--oauth2-bearer", "S3cretOauth", "https://h/"], ["S3cretOauth"]),
    (["curl", "-H", "Authorization: Bearer S3cretBearer", "https://h/"], ["S3cretBearer"]),
    (["curl", "-H", "Authorization: Basic QWxhZGRpbjpTM2NyZXQ=", "https://h/"], ["QWxhZGRpbjpTM2NyZXQ="]),
    (["curl", "-H", "Proxy-Authorization:token S3cretProxyTok", "https://h/"], ["S3cretProxyTok"]),
    (["git", "clone", "https://ghp_S3cretGitHub@github.com/o/r"], ["ghp_S3cretGitHub"]),
    (["git", "clone", "git+https://S3cretGitLab@gitlab.com/o/r"], ["S3cretGitLab"]),
    (["app", '{"password": "S3cretJson", "user": "alice"}'], ["S3cretJson"]),
    (["app", "--data", "{\"api_key\":12345678,\"n\":1}"], ["12345678"]),
    (["app", "{'client_secret': 'S3cretRepr'}"], ["S3cretRepr"]),
    (["sh", "-c", "mysql -pS3cretShell db && curl -u a:S3cretShell2 http://h/"], ["S3cretShell", "S3cretShell2"]),
    (["./livecrash", "SECRET_TOKEN=abc12345"], ["abc12345"]),
    (["redis-cli", "-h", "cache", "-a", "S3cretRedis", "ping"], ["S3cretRedis"]),
    (["sshpass", "-pS3cretSsh", "ssh", "host"], ["S3cretSsh"]),
    (["mongosh", "-u", "admin", "-p", "S3cretMongo", "db"], ["S3cretMongo"]),
    (["smbclient", "//srv/share", "-U", "alice%S3cretSmb"], ["S3cretSmb"]),
]


@pytest.mark.parametrize("argv,secrets", SPELLINGS, ids=[" ".join(a)[:40] for a, _ in SPELLINGS])
def test_every_spelling_masked_in_argv_and_in_the_joined_command_line(argv, secrets):
    for shown in (" ".join(mask_argv(argv)), mask_text(" ".join(argv)), mask_psargs(" ".join(argv))):
        for secret in secrets:
            assert secret not in shown, shown
        assert MASK in shown


@pytest.mark.parametrize("argv,secrets", SPELLINGS, ids=[" ".join(a)[:40] for a, _ in SPELLINGS])
def test_every_spelling_masked_in_an_environment_value(argv, secrets):
    masked = mask_environ({"COMMAND": " ".join(argv)})
    for secret in secrets:
        assert secret not in masked["COMMAND"], masked


def test_environment_names_and_values():
    env = {"MYSQL_PWD": "S3cretA", "DB_PASS": "S3cretB", "SMTP_PASS": "S3cretC", "PASS": "S3cretD",
           "GPG_PASSPHRASE": "S3cretE", "HEADER": "Authorization: Bearer S3cretF",
           "AUTH_HEADER_VALUE": "x", "BEARER": "Bearer S3cretG", "REPO": "https://S3cretH@github.com/o/r",
           "CONFIG": '{"db": {"host": "h", "password": "S3cretI"}, "port": 5432}',
           "MYSQL_OPTS": "--user=root -pS3cretJ", "CURL_ARGS": "-u me:S3cretK",
           "FORWARD": "HTTP_AUTHORIZATION=Basic S3cretL", "OPTS": "--password 'S3cretM S3cretN' --verbose",
           "PWD": "/srv/app", "OLDPWD": "/root", "PORT": "8080"}
    masked = mask_environ(env)
    text = json.dumps(masked)
    for secret in "ABCDEFGHIJKLMN":
        assert f"S3cret{secret}" not in text, secret
    assert masked["MYSQL_PWD"] == masked["DB_PASS"] == masked["PASS"] == MASK
    assert masked["CONFIG"] == '{"db": {"host": "h", "password": "***"}, "port": 5432}'
    assert masked["CURL_ARGS"] == f"-u me:{MASK}" and masked["OPTS"].endswith(" --verbose")
    assert (masked["PWD"], masked["OLDPWD"], masked["PORT"]) == ("/srv/app", "/root", "8080")


# ---- what stays: the rule for -p and -u, bare users outside http, shell directories ----

@pytest.mark.parametrize("text", [
    "python3 server.py -p8080",  # a port
    "gcc -pthread -O2 -o app app.c",  # a compiler flag
    "mkdir -p /var/lib/app",
    "ssh -p2222 host",
    "docker run -u 1000:1000 -p 8080:80 nginx",  # uid:gid and ports: -u is curl's only after curl
    "sudo -u postgres psql --no-password shop",  # --no-password is a flag: shop stays
    "mysql -p shop",  # a lone -p asks for the password: shop is the database
    "ls -a /tmp", "tar -pxf x.tar",  # -a and -p are redis-cli's and sshpass's only after them
    "smbclient //srv/share -U alice",  # no password in it: smbclient asks
    "postgres://app@db/x", "ssh://git@github.com/o/r", "user@example.com",
    "http://example.com:8080/a@b", "https://host/path",
    '{"user": "alice", "port": 5432}', "the password prompt",
])
def test_harmless_text_left_alone(text):
    assert mask_text(text) == text
    assert " ".join(mask_argv(text.split(" "))) == text


def test_a_cut_command_line_hides_a_url_cut_inside_its_authority():
    long = "x" * 60
    assert mask_psargs(f"{long} https://ghp_S3cretGitHub") == f"{long} https://{MASK}"
    assert mask_psargs(f"{long} postgres://app:S3cretPg") == f"{long} postgres://{MASK}"
    assert mask_psargs(f"{long} --data {{\"password\": \"S3cr") == f"{long} --data {{\"password\": \"{MASK}\""
    # not cut: a URL with a port at the end is a URL with a port
    assert mask_psargs("app http://example.com:8080") == "app http://example.com:8080"
    assert mask_psargs(f"{long} https://host/path") == f"{long} https://host/path"


@pytest.mark.parametrize("argv,secrets", SPELLINGS, ids=[" ".join(a)[:40] for a, _ in SPELLINGS])
def test_masking_is_idempotent(argv, secrets):
    once = mask_argv(argv)
    assert mask_argv(once) == once
    text = mask_text(" ".join(argv))
    assert mask_text(text) == text and mask_psargs(text) == text
    env = mask_environ({"X": " ".join(argv), "MYSQL_PWD": "x"})
    assert mask_environ(env) == env


def test_configured_names_reach_every_rule():
    names = ("*PIN*",)
    assert mask_argv(["app", "--pin", "1234", "--pin-code=5678", '{"pin": 4321}', "pin=8765"], names) == \
        ["app", "--pin", MASK, f"--pin-code={MASK}", f'{{"pin": {MASK}}}', f"pin={MASK}"]
    assert mask_environ({"CARD_PIN": "1", "DB_PASSWORD": "2"}, names) == {"CARD_PIN": MASK, "DB_PASSWORD": "2"}
    # the structural rules hold whatever the names
    assert mask_text("curl -u a:b -H 'Authorization: Bearer t' https://tok@h/", ()) == \
        f"curl -u a:{MASK} -H 'Authorization: Bearer {MASK}' https://{MASK}@h/"


def test_dashes_dots_and_underscores_are_alike_in_names():
    assert is_secret_name("db-pass") and is_secret_name("mysql.pwd") and is_secret_name("api-key")
    assert is_secret_name("X_MY_THING", ("*my-thing",))
    assert not is_secret_name("PWD") and not is_secret_name("OLDPWD") and not is_secret_name("BYPASS")


# ---- rows stored before the fix: masked as they are read ----

def _old_row():
    """A crash as an older version stored it: the core's psargs and the
    metadata unmasked."""
    from coretriage.records import CrashRow

    analysis = {"core": "/x/core", "executable": "/srv/livecrash",
                "command_line": "./livecrash SECRET_TOKEN=abc123 -H Authorization: Bearer S3cretOld"}
    meta = {"cmdline": ["./livecrash", "--password", "S3cretArgv"], "environ": {"MYSQL_PWD": "S3cretEnv"},
            "labels": {"com.example.api-key": "S3cretLabel"}, "problems": ["x: https://S3cretUrl@h/"]}
    return CrashRow(id="c0123456789ab", group_id=1, crashed_at=1.0, ingested_at=2.0, executable="/srv/livecrash",
                    signal="SIGSEGV", host="h", container=None, image=None, core_file=None, exe_file=None,
                    sysroot=None, analysis=analysis, signature={"text": "main"}, meta=meta)


OLD_SECRETS = ("abc123", "S3cretOld", "S3cretArgv", "S3cretEnv", "S3cretLabel", "S3cretUrl")


def test_a_row_stored_unmasked_is_masked_in_every_report():
    from coretriage.records import GroupRow
    from coretriage.reports import crash_json, crash_report, group_report

    row = _old_row()
    group = GroupRow(id=1, signature="main", executable="/srv/livecrash", signal="SIGSEGV", count=1,
                     first_seen=1.0, last_seen=1.0, quality=1.0, state="new", note="")
    shown = [crash_report(row, fmt) for fmt in ("text", "markdown", "json")]
    shown += [group_report(group, [row], fmt) for fmt in ("text", "markdown", "json")]
    shown.append(json.dumps(crash_json(row)))
    for text in shown:
        for secret in OLD_SECRETS:
            assert secret not in text, (secret, text)
    assert f"Command line : ./livecrash SECRET_TOKEN={MASK} -H Authorization: Bearer {MASK}" in shown[0]


def test_masking_a_row_honours_the_hosts_names(tmp_path):
    from coretriage.masking import mask_meta, secret_names

    assert secret_names(tmp_path) == DEFAULT_SECRET_NAMES  # no collector.toml
    (tmp_path / "collector.toml").write_text('secret_names = ["*PIN*"]\n')
    assert secret_names(tmp_path) == ("*PIN*",)
    assert mask_meta({"environ": {"CARD_PIN": "1"}}, secret_names(tmp_path)) == {"environ": {"CARD_PIN": MASK}}
    (tmp_path / "collector.toml").write_text("secret_names = [\n")  # broken: the handler's defaults
    assert secret_names(tmp_path) == DEFAULT_SECRET_NAMES
