"""analyzer/enrichers/redis.py: how a client's command is shown."""

from analyzer.enrichers.redis import command_line


def test_subcommands_are_part_of_the_command():
    assert command_line(["debug", "segfault"]) == ("DEBUG SEGFAULT", None)
    assert command_line(["config", "get", "maxmemory"]) == ("CONFIG GET", "?")


def test_arguments_are_user_data_hidden_unless_asked_for():
    assert command_line(["SET", "user:42:email", "a@example.com"]) == ("SET", "? ?")
    assert command_line(["SET", "user:42", "x" * 100], show_literals=True) == ("SET", "user:42 " + "x" * 64 + "...")


def test_passwords_are_never_shown():
    assert command_line(["AUTH", "default", "hunter2"], show_literals=True) == ("AUTH", "? ?")
    assert command_line(["HELLO", "3", "AUTH", "app", "hunter2"], show_literals=True) == ("HELLO", "3 AUTH ? ?")
    assert command_line(["CONFIG", "SET", "requirepass", "hunter2"], show_literals=True) == (
        "CONFIG SET", "requirepass ?")
    assert command_line(["ACL", "SETUSER", "app", ">hunter2"], show_literals=True) == ("ACL SETUSER", "? ?")
    assert command_line(["MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "u", "p"], show_literals=True)[1] \
        .endswith("AUTH2 ? ?")
