"""The management commands, answering in stock's exact words (manage.c man_dispatch_command).

Each handler writes its reply to the connection: one "SUCCESS: ..."/"ERROR: ..." line, or
lines closed by "END" for the listings (help, version, status, state/log/echo N|all).
"""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Callable
from typing import Protocol

from tunnel.app.logsetup import get_mute, get_verb, set_mute, set_verb
from tunnel.app.management.connection import Connection
from tunnel.app.management.history import History
from tunnel.app.management.host import AuthDecision, ManagementHost, Unsupported
from tunnel.app.management.passwords import PasswordQueries


class Management(Protocol):
    """What the command table needs of the management interface (`server.Management`;
    named here so this module never imports server.py, which imports it)."""

    title: str
    host: ManagementHost | None
    hold_flag: bool
    passwords: PasswordQueries
    log_history: History
    state_history: History
    echo_history: History

    def now(self) -> float: ...

    def release_hold(self) -> None: ...

__all__ = ["COMMANDS", "HELP", "parse_line"]

MANAGEMENT_VERSION = 5
MAX_PARAMS = 16

HELP = """\
Commands:
auth-retry t           : Auth failure retry mode (none,interact,nointeract).
bytecount n            : Show bytes in/out, update every n secs (0=off).
echo [on|off] [N|all]  : Like log, but only show messages in echo buffer.
exit|quit              : Close management session.
forget-passwords       : Forget passwords entered so far.
help                   : Print this message.
hold [on|off|release]  : Set/show hold flag to on/off state, or
                         release current hold and start tunnel.
kill cn                : Kill the client instance(s) having common name cn.
kill IP:port           : Kill the client instance connecting from IP:port.
load-stats             : Show global server load stats.
log [on|off] [N|all]   : Turn on/off realtime log display
                         + show last N lines or 'all' for entire history.
mute [n]               : Set log mute level to n, or show level if n is absent.
net                    : (Windows only) Show network info and routing table.
password type p        : Enter password p for a queried OpenVPN password.
pid                    : Show process ID of the current OpenVPN process.
client-auth CID KID    : Authenticate client-id/key-id CID/KID (MULTILINE)
client-auth-nt CID KID : Authenticate client-id/key-id CID/KID
client-deny CID KID R [CR] : Deny auth client-id/key-id CID/KID with log reason
                             text R and optional client reason text CR
client-kill CID [M]    : Kill client instance CID with message M (def=RESTART)
signal s               : Send signal s to daemon,
                         s = SIGHUP|SIGTERM|SIGUSR1|SIGUSR2.
state [on|off] [N|all] : Like log, but show state history.
status [n]             : Show current daemon status info using format #n.
username type u        : Enter username u for a queried OpenVPN username.
verb [n]               : Set log verbosity level to n, or show if n is absent.
version [n]            : Set client's version to n or show current version of daemon.
END"""

SIGNALS = {"SIGHUP": signal.SIGHUP, "SIGTERM": signal.SIGTERM, "SIGUSR1": signal.SIGUSR1,
           "SIGUSR2": signal.SIGUSR2, "SIGINT": signal.SIGINT}


def parse_line(line: str) -> list[str]:
    """Stock's parse_line: words split on blanks, "double quotes" and backslash escapes."""
    words: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if escaped:
            (word := word if word is not None else []).append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            word = word if word is not None else []
        elif ch.isspace() and not quoted:
            if word is not None:
                words.append("".join(word))
                word = None
        else:
            (word := word if word is not None else []).append(ch)
    if word is not None:
        words.append("".join(word))
    return words[: MAX_PARAMS + 1]


def _atoi(text: str) -> int:
    """C's atoi: the leading digits, 0 if none (stock parses numbers with it)."""
    digits = ""
    for i, ch in enumerate(text.strip()):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits[:12])
    except ValueError:
        return 0


def _need(c: Connection, p: list[str], n: int, at_least: bool = False) -> bool:
    if len(p) - 1 >= n:
        return True
    c.send(f"ERROR: the '{p[0]}' command requires {'at least ' if at_least else ''}{n} "
           f"parameter{'s' if n > 1 else ''}")
    return False


def _unsupported(c: Connection, name: str) -> None:
    c.send(f"ERROR: The '{name}' command is not supported by the current daemon mode")


def _history(m: Management, c: Connection, parm: str, kind: str, history: History) -> None:
    attr = f"{kind}_realtime"
    if parm == "on":
        setattr(c, attr, True)
        c.send(f"SUCCESS: real-time {kind} notification set to ON")
    elif parm == "off":
        setattr(c, attr, False)
        c.send(f"SUCCESS: real-time {kind} notification set to OFF")
    elif parm == "all" or _atoi(parm) > 0:
        c.send(*history.last(None if parm == "all" else _atoi(parm)), "END")
    else:
        c.send(f"ERROR: {kind} parameter must be 'on' or 'off' or some number n or 'all'")


def _help(m: Management, c: Connection, p: list[str]) -> None:
    c.send(f"Management Interface for {m.title}", *HELP.splitlines())


def _version(m: Management, c: Connection, p: list[str]) -> None:
    if len(p) > 1:
        c.client_version = _atoi(p[1])  # stock stores it silently
        return
    c.send(f"OpenVPN Version: {m.title}", f"Management Version: {MANAGEMENT_VERSION}", "END")


def _pid(m: Management, c: Connection, p: list[str]) -> None:
    c.send(f"SUCCESS: pid={os.getpid()}")


def _status(m: Management, c: Connection, p: list[str]) -> None:
    version = _atoi(p[1]) if len(p) > 1 else 1
    host = m.host
    if host is None:
        _unsupported(c, "status")
        return
    c.send(*host.status_text(version if version in (1, 2, 3) else 1).splitlines())


def _state(m: Management, c: Connection, p: list[str]) -> None:
    for parm in p[1:3] or ["1"]:
        _history(m, c, parm, "state", m.state_history)


def _log(m: Management, c: Connection, p: list[str]) -> None:
    if _need(c, p, 1, at_least=True):
        for parm in p[1:3]:
            _history(m, c, parm, "log", m.log_history)


def _echo(m: Management, c: Connection, p: list[str]) -> None:
    if _need(c, p, 1, at_least=True):
        for parm in p[1:3]:
            _history(m, c, parm, "echo", m.echo_history)


def _bytecount(m: Management, c: Connection, p: list[str]) -> None:
    if _need(c, p, 1):
        seconds = _atoi(p[1])
        c.bytecount_interval = max(0, seconds)
        c.bytecount_due = m.now() + seconds
        c.send("SUCCESS: bytecount interval changed")


def _verb(m: Management, c: Connection, p: list[str]) -> None:
    if len(p) > 1:
        level = _atoi(p[1])
        if 0 <= level <= 11:
            set_verb(level)
            c.send("SUCCESS: verb level changed")
        else:
            c.send("ERROR: verb level is out of range")
    else:
        c.send(f"SUCCESS: verb={get_verb()}")


def _mute(m: Management, c: Connection, p: list[str]) -> None:
    if len(p) > 1:
        level = _atoi(p[1])
        if level >= 0:
            set_mute(level)
            c.send("SUCCESS: mute level changed")
        else:
            c.send("ERROR: mute level is out of range")
    else:
        c.send(f"SUCCESS: mute={get_mute()}")


def _load_stats(m: Management, c: Connection, p: list[str]) -> None:
    n, bytes_in, bytes_out = m.host.load_stats() if m.host is not None else (0, 0, 0)
    c.send(f"SUCCESS: nclients={n},bytesin={bytes_in},bytesout={bytes_out}")


def _net(m: Management, c: Connection, p: list[str]) -> None:
    c.send("ERROR: Sorry, this command is currently only implemented on Windows")


def _hold(m: Management, c: Connection, p: list[str]) -> None:
    parm = p[1] if len(p) > 1 else None
    if parm is None:
        c.send(f"SUCCESS: hold={int(m.hold_flag)}")
    elif parm == "on":
        m.hold_flag = True
        c.send("SUCCESS: hold flag set to ON")
    elif parm == "off":
        m.hold_flag = False
        c.send("SUCCESS: hold flag set to OFF")
    elif parm == "release":
        m.release_hold()
        c.send("SUCCESS: hold release succeeded")
    else:
        c.send("ERROR: bad hold command parameter")


def _kill(m: Management, c: Connection, p: list[str]) -> None:
    if not _need(c, p, 1):
        return
    host = m.host
    if host is None or host.role != "server":
        _unsupported(c, "kill")
        return
    victim = p[1]
    first, _, rest = victim.partition(":")
    second = rest.partition(":")[0]
    if first and second:
        try:
            ip = str(ipaddress.IPv4Address(first))
        except ValueError:
            c.send(f"ERROR: error parsing IP address: {first}")
            return
        port = _atoi(second)
        if not 0 < port < 65536:
            c.send(f"ERROR: port number is out of range: {second}")
            return
        killed = host.kill_by_address(ip, port)
        if killed:
            c.send(f"SUCCESS: {killed} client(s) at address {ip}:{port} killed")
        else:
            c.send(f"ERROR: client at address {ip}:{port} not found")
    elif first:
        killed = host.kill_by_common_name(first)
        if killed:
            c.send(f"SUCCESS: common name '{first}' found, {killed} client(s) killed")
        else:
            c.send(f"ERROR: common name '{first}' not found")
    else:
        c.send("ERROR: kill parse")


def _parse_id(c: Connection, text: str, what: str) -> int | None:
    if text.isdigit() and len(text) <= 19:
        return int(text)
    c.send(f"ERROR: cannot parse {what}")
    return None


def _client_kill(m: Management, c: Connection, p: list[str]) -> None:
    if not _need(c, p, 1, at_least=True):
        return
    if m.host is None or m.host.role != "server":
        _unsupported(c, "client-kill")
        return
    cid = _parse_id(c, p[1], "CID")
    if cid is None:
        return
    message = p[2] if len(p) > 2 else "RESTART"
    ok = m.host.client_kill(cid, message)
    c.send("SUCCESS: client-kill command succeeded" if ok else
           "ERROR: client-kill command failed")


def _ids(c: Connection, p: list[str]) -> tuple[int, int] | None:
    cid = _parse_id(c, p[1], "CID")
    if cid is None:
        return None
    kid = _parse_id(c, p[2], "KID")
    return None if kid is None else (cid, kid)


def _decide(m: Management, c: Connection, decision: AuthDecision, name: str) -> None:
    assert m.host is not None
    ok = m.host.client_auth(decision)
    c.send(f"SUCCESS: {name} command succeeded" if ok else f"ERROR: {name} command failed")


def _client_auth(m: Management, c: Connection, p: list[str]) -> None:
    if not _need(c, p, 2):
        return
    ids = _ids(c, p)
    if ids is None:
        return
    # The config lines follow, up to END; the verdict is given once they are in.
    c.multiline = ("client-auth", ids[0], ids[1], [])


def _client_auth_nt(m: Management, c: Connection, p: list[str]) -> None:
    if not _need(c, p, 2):
        return
    if m.host is None or m.host.role != "server":
        _unsupported(c, "client-auth")
        return
    ids = _ids(c, p)
    if ids is not None:
        _decide(m, c, AuthDecision(ids[0], ids[1], True), "client-auth")


def finish_client_auth(m: Management, c: Connection) -> None:
    """END after `client-auth CID KID`: decide with the lines in between."""
    assert c.multiline is not None
    _, cid, kid, lines = c.multiline
    c.multiline = None
    if m.host is None or m.host.role != "server":
        _unsupported(c, "client-auth")
        return
    _decide(m, c, AuthDecision(cid, kid, True, config=tuple(lines)), "client-auth")


def _client_deny(m: Management, c: Connection, p: list[str]) -> None:
    if not _need(c, p, 3, at_least=True):
        return
    if m.host is None or m.host.role != "server":
        _unsupported(c, "client-deny")
        return
    ids = _ids(c, p)
    if ids is not None:
        client_reason = p[4] if len(p) > 4 else None
        _decide(m, c, AuthDecision(ids[0], ids[1], False, p[3], client_reason), "client-deny")


def _signal(m: Management, c: Connection, p: list[str]) -> None:
    if not _need(c, p, 1):
        return
    signum = SIGNALS.get(p[1])
    if signum is None:
        c.send(f"ERROR: signal '{p[1]}' is not a known signal type")
        return
    c.send(f"SUCCESS: signal {p[1]} thrown")
    if m.host is not None:
        m.host.throw_signal(signum)


def _username(m: Management, c: Connection, p: list[str]) -> None:
    if _need(c, p, 2):
        m.passwords.enter(c, "username", p[1], p[2])


def _password(m: Management, c: Connection, p: list[str]) -> None:
    if _need(c, p, 2):
        m.passwords.enter(c, "password", p[1], p[2])


def _forget_passwords(m: Management, c: Connection, p: list[str]) -> None:
    m.passwords.forget()
    c.send("SUCCESS: Passwords were forgotten")


def _exit(m: Management, c: Connection, p: list[str]) -> None:
    c.close()


Handler = Callable[["Management", Connection, list[str]], None]

COMMANDS: dict[str, Handler] = {
    "exit": _exit, "quit": _exit, "help": _help, "version": _version, "pid": _pid,
    "status": _status, "state": _state, "log": _log, "echo": _echo, "bytecount": _bytecount,
    "verb": _verb, "mute": _mute, "load-stats": _load_stats, "net": _net, "hold": _hold,
    "kill": _kill, "client-kill": _client_kill, "client-auth": _client_auth,
    "client-auth-nt": _client_auth_nt, "client-deny": _client_deny, "signal": _signal,
    "username": _username, "password": _password, "forget-passwords": _forget_passwords,
}


def run_command(m: Management, c: Connection, words: list[str]) -> None:
    handler = COMMANDS.get(words[0])
    if handler is None:
        c.send("ERROR: unknown command, enter 'help' for more options")
        return
    try:
        handler(m, c, words)
    except Unsupported:
        _unsupported(c, words[0])
