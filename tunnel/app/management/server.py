"""The management interface: an asyncio server on the tunnel's event loop.

    management = Management(cfg.management, log, title)
    await management.open()          # binds (as root, before privileges are dropped)
    management.host = runtime        # what `status`, `kill`, ... act on (survives restarts)
    management.state("CONNECTED", "SUCCESS", local_ip="10.8.0.1", local=("192.0.2.1", 1194))

Stock serves one management client at a time; we serve up to MAX_CLIENTS at once, each
with its own `log on`/`state on`/`bytecount` switches, so a GUI and a monitoring script can
share one daemon. Every notification is sent to every connected, authenticated client.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tunnel.app.management.commands import finish_client_auth, parse_line, run_command
from tunnel.app.management.connection import Connection
from tunnel.app.management.history import EchoEntry, History, LogEntry, StateEntry, log_flag
from tunnel.app.management.host import ManagementHost
from tunnel.app.management.passwords import PasswordQueries
from tunnel.config.mgmt_model import ManagementOptions

__all__ = ["MAX_CLIENTS", "Management", "ManagementError", "read_password_file"]

MAX_CLIENTS = 8
HISTORY_SIZE = 100  # stock's MANAGEMENT_STATE_BUFFER_SIZE / ECHO_BUFFER_SIZE
WELCOME = ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info"
HOLD_MESSAGE = ">HOLD:Waiting for hold release:0"
Address = tuple[str, int]


class ManagementError(Exception):
    """The interface cannot start (bind, password file); the text is the one-line reason."""


def read_password_file(path: Path) -> str:
    """The first line of the file, as stock reads it (an empty one is an error)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            line = f.readline(1024).rstrip("\r\n")
    except OSError as exc:
        raise ManagementError(f"cannot read the management password file {path}: "
                              f"{exc.strerror or exc}") from None
    if not line:
        raise ManagementError(f"the management password file {path} is empty")
    return line


class _LogBridge(logging.Handler):
    """Every log record printed also goes to the log history and `log on` clients."""

    def __init__(self, management: Management) -> None:
        super().__init__()
        self.management = management

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().replace("\r", " ").replace("\n", " ")
        except Exception:  # a bad format string must not break logging
            return
        self.management.log_line(int(record.created), log_flag(record.levelno), text)


class Management:
    def __init__(self, options: ManagementOptions, log: logging.Logger, title: str) -> None:
        self.options = options
        self.log = log
        self.title = title
        self.host: ManagementHost | None = None
        self.password = (read_password_file(options.password_file)
                         if options.password_file is not None else None)
        self.log_history = History(options.log_cache)
        self.state_history = History(HISTORY_SIZE)
        self.echo_history = History(HISTORY_SIZE)
        self.client_auth = options.client_auth
        self.hold_flag = options.hold
        self.passwords = PasswordQueries(self)
        self.connections: list[Connection] = []
        self.now: Callable[[], float] = time.monotonic
        self._server: asyncio.Server | None = None
        self._hold: asyncio.Future[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._bridge = _LogBridge(self)
        self._in_log = False

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        o = self.options
        try:
            if o.unix_path is not None:
                self._remove_stale_socket(o.unix_path)
                self._server = await loop.create_unix_server(
                    lambda: Connection(self, self.log), str(o.unix_path))
                where = f"unix {o.unix_path}"
            else:
                assert o.host is not None and o.port is not None
                self._server = await loop.create_server(
                    lambda: Connection(self, self.log), o.host, o.port,
                    family=socket.AF_INET6 if ":" in o.host else socket.AF_INET,
                    reuse_address=True)
                sockname = self._server.sockets[0].getsockname()
                where = f"tcp/{sockname[0]}:{sockname[1]}"
        except OSError as exc:
            raise ManagementError(f"cannot open the management interface: "
                                  f"{exc.strerror or exc}") from None
        self.log.info("MANAGEMENT: %s listening on %s", "unix socket" if o.unix_path else
                      "TCP socket", where)
        logging.getLogger(self.log.name).addHandler(self._bridge)
        self._ticker = loop.create_task(self._tick())

    @property
    def address(self) -> Address | None:
        if self._server is None or self.options.unix_path is not None:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @staticmethod
    def _remove_stale_socket(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)

    async def close(self) -> None:
        logging.getLogger(self.log.name).removeHandler(self._bridge)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for c in list(self.connections):
            c.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self.options.unix_path is not None:
            self._remove_stale_socket(self.options.unix_path)

    # -- connections --------------------------------------------------------------------------

    def accept(self, c: Connection) -> bool:
        if len(self.connections) >= MAX_CLIENTS:
            c.send(f"ERROR: too many management clients (at most {MAX_CLIENTS})")
            c.close()
            return False
        if not self._peer_allowed(c):
            c.close()
            return False
        self.connections.append(c)
        self.log.info("MANAGEMENT: Client connected from %s", c.peer)
        return True

    def _peer_allowed(self, c: Connection) -> bool:
        o = self.options
        if o.unix_path is None or not (o.client_user or o.client_group):
            return True
        assert c.transport is not None
        sock = c.transport.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        # struct ucred { pid_t pid; uid_t uid; gid_t gid; }, native byte order
        uid = int.from_bytes(creds[4:8], sys.byteorder)
        gid = int.from_bytes(creds[8:12], sys.byteorder)
        try:
            if o.client_user and pwd.getpwnam(o.client_user).pw_uid != uid:
                self.log.warning("MANAGEMENT: UNIX domain socket client uid %d doesn't match "
                                 "(%s)", uid, o.client_user)
                return False
            if o.client_group and grp.getgrnam(o.client_group).gr_gid != gid:
                self.log.warning("MANAGEMENT: UNIX domain socket client gid %d doesn't match "
                                 "(%s)", gid, o.client_group)
                return False
        except KeyError:
            self.log.warning("MANAGEMENT: unknown management-client-user/group")
            return False
        return True

    def forget(self, c: Connection) -> None:
        if c in self.connections:
            self.connections.remove(c)
            self.log.info("MANAGEMENT: Client disconnected")
            if self.options.forget_disconnect:
                self.passwords.forget()
            if self.options.signal and c.authenticated and self.host is not None:
                self.log.info("MANAGEMENT: client disconnected: SIGUSR1 (management-signal)")
                self.host.throw_signal(signal.SIGUSR1)

    def welcome(self, c: Connection) -> None:
        c.send(WELCOME)
        if self._hold is not None and not self._hold.done():
            c.send(HOLD_MESSAGE)
        prompt = self.passwords.prompt()
        if prompt is not None:
            c.send(prompt)

    def command(self, c: Connection, line: str) -> None:
        words = parse_line(line)
        if not words:
            return
        shown = "password [...]" if words[0] == "password" else line
        self.log.log(15, "MANAGEMENT: CMD '%s'", shown)
        run_command(self, c, words)

    def multiline_line(self, c: Connection, line: str) -> None:
        assert c.multiline is not None
        if line == "END":
            finish_client_auth(self, c)
        elif len(c.multiline[3]) < 1000:  # bounded: a per-client config, not a stream
            c.multiline[3].append(line)

    # -- notifications --------------------------------------------------------------------

    def _ready(self) -> list[Connection]:
        return [c for c in self.connections if c.authenticated and not c.closed]

    def broadcast(self, *lines: str) -> None:
        for c in self._ready():
            c.send(*lines)

    def log_line(self, timestamp: int, flags: str, text: str) -> None:
        if self._in_log:
            return  # a warning raised while sending a log line is not sent again
        self._in_log = True
        try:
            entry = LogEntry(timestamp, flags, text)
            self.log_history.add(entry)
            for c in self._ready():
                if c.log_realtime:
                    c.send(f">LOG:{entry.line()}")
        finally:
            self._in_log = False

    def echo(self, text: str) -> None:
        entry = EchoEntry(int(time.time()), text)
        self.echo_history.add(entry)
        for c in self._ready():
            if c.echo_realtime:
                c.send(f">ECHO:{entry.line()}")

    def state(self, name: str, description: str = "", *, local_ip: str = "",
              remote: Address | None = None, local: Address | None = None,
              local_ip6: str = "") -> None:
        entry = StateEntry(int(time.time()), name, description, local_ip, remote, local,
                           local_ip6)
        self.state_history.add(entry)
        for c in self._ready():
            if c.state_realtime:
                c.send(f">STATE:{entry.line()}")

    def info(self, text: str) -> None:
        self.broadcast(f">INFO:{text}")

    # -- hold -------------------------------------------------------------------------------

    async def hold(self) -> None:
        """If the hold flag is set: wait for `hold release` (">HOLD:" tells the clients)."""
        if not self.hold_flag:
            return
        self._hold = asyncio.get_running_loop().create_future()
        self.broadcast(HOLD_MESSAGE)
        self.log.info("MANAGEMENT: waiting for hold release")
        try:
            await self._hold
        finally:
            self._hold = None

    def release_hold(self) -> None:
        if self._hold is not None and not self._hold.done():
            self._hold.set_result(None)

    # -- bytecount --------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = self.now()
            due = [c for c in self._ready() if c.bytecount_interval > 0
                   and now >= c.bytecount_due]
            if not due or self.host is None:
                continue
            counts = self.host.bytecounts()
            for c in due:
                c.bytecount_due = now + c.bytecount_interval
                for count in counts:
                    if count.client_id is None:
                        c.send(f">BYTECOUNT:{count.bytes_in},{count.bytes_out}")
                    else:
                        c.send(f">BYTECOUNT_CLI:{count.client_id},{count.bytes_in},"
                               f"{count.bytes_out}")
