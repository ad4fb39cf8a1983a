"""analyzer/secrets.py: secret names, masking environments, argv and text."""

import json

from analyzer.secrets import MASK, is_secret_name, mask_argv, mask_environ, mask_text


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
