"""Redis: the command the current client was running when the server crashed.

``server.current_client`` and its ``argv`` need Redis' debug info (a build
with -g, or its dbgsym package in the symbol store): the stock binary
exports the symbol ``server`` but not its type, and then the command field
says what is missing. Arguments are keys and values, that is user data: they
are shown as ``?`` unless ``show_literals`` is set, and a password is never
shown.
"""

from __future__ import annotations

from analyzer.enrichers import Probe, Target
from analyzer.model import Context

PROGRAM = "redis"
MAX_ARGS = 16
MAX_ARG_TEXT = 64
OBJ_ENCODING_INT = "1"  # the robj's ptr is the number itself
# commands whose first argument names what they do (DEBUG SEGFAULT, CONFIG SET)
SUBCOMMANDS = frozenset({"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY",
                         "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO"})
# everything from such a word on may be a password
SECRET_FROM = frozenset({"AUTH", "AUTH2", "REQUIREPASS", "MASTERAUTH", "MASTERUSER", "SETUSER"})
NO_DEBUG_INFO = ("not available: redis-server has no debug info here (add its dbgsym package with "
                 "`coretriage symbols add`, or build with -g)")


def matches(target: Target) -> bool:
    return target.name.startswith(("redis-server", "redis-sentinel", "valkey-server"))


def command_line(argv: list[str], show_literals: bool = False) -> tuple[str, str | None]:
    """(command, its arguments as shown) from a client's argv."""
    if not argv:
        return "", None
    words = [argv[0].upper()]
    if words[0] in SUBCOMMANDS and len(argv) > 1:
        words.append(argv[1].upper())
    rest = argv[len(words):]
    if not rest:
        return " ".join(words), None
    shown, secret = [], words[0] in SECRET_FROM or words[-1] in SECRET_FROM
    for arg in rest:
        keyword = arg.upper() in SECRET_FROM
        secret = secret or keyword
        if keyword:
            shown.append(arg)  # the word itself; what follows it is hidden
        elif secret or not show_literals:
            shown.append("?")
        else:
            shown.append(arg if len(arg) <= MAX_ARG_TEXT else arg[:MAX_ARG_TEXT] + "...")
    return " ".join(words), " ".join(shown)


def _argv(probe: Probe, argc: int) -> list[str]:
    out = []
    for i in range(min(argc, MAX_ARGS)):
        item = f"server.current_client->argv[{i}]"
        if probe.evaluate(f"{item}->encoding") == OBJ_ENCODING_INT:
            out.append(probe.evaluate(f"(long){item}->ptr") or "?")
        else:
            out.append(probe.string(f"(char *){item}->ptr") or "?")
    return out


def enrich(target: Target, probe: Probe) -> Context | None:
    client = probe.evaluate("(unsigned long)server.current_client")
    if client is None:
        return Context(PROGRAM, (("command", NO_DEBUG_INFO),))
    if client == "0":
        return Context(PROGRAM, (("command", "none: no client command was running"),))
    argc = probe.evaluate("server.current_client->argc")
    if argc is None or not argc.isdigit():
        return Context(PROGRAM, (("command", "not available: the client is not in the core"),))
    command, arguments = command_line(_argv(probe, int(argc)), bool(target.options.get("show_literals")))
    fields = [("command", command)]
    if arguments is not None:
        fields.append(("arguments", arguments + (f" (and {int(argc) - MAX_ARGS} more)" if int(argc) > MAX_ARGS
                                                 else "")))
    peer = probe.string("(char *)server.current_client->peerid")
    if peer:
        fields.append(("client", peer))
    name = probe.string("(char *)server.current_client->name->ptr")
    if name:
        fields.append(("client_name", name))
    client_id = probe.evaluate("server.current_client->id")
    if client_id and client_id.isdigit():
        fields.append(("client_id", client_id))
    return Context(PROGRAM, tuple(fields))
