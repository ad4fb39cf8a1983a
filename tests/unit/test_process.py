"""collector/process.py: the parsers of /proc/PID files."""

from collector.process import mapped_paths, parse_environ


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


def test_one_status_parser_for_proc_and_fdinfo():
    from collector.process import parse_status

    text = "Name:\tsleep\nUid:\t0\t0\t0\t0\nNSpid:\t4242\t1\nno colon here\n"
    assert parse_status(text) == parse_status(text.encode()) == {
        "Name": "sleep", "Uid": "0\t0\t0\t0", "NSpid": "4242\t1"}
