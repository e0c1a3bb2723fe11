"""One management client: bounded line input, the password prompt, stock's CRLF output.

Input: lines end with LF (a CR before it is dropped); a line longer than MAX_LINE is thrown
away whole and answered with an ERROR line, so a client cannot make us buffer without bound.
Output: written without waiting; a client that stops reading and lets more than MAX_PENDING
bytes pile up in our send buffer is disconnected, so it can never hold the tunnel up.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Protocol, cast

__all__ = ["MAX_LINE", "MAX_PENDING", "Connection", "ConnectionOwner"]

MAX_LINE = 4096  # bytes of one command line (stock's own reader stops at 1 KiB parameters)
MAX_PENDING = 1 << 20  # bytes queued to a client that does not read
PASSWORD_TRIES = 3  # MANAGEMENT_N_PASSWORD_RETRIES


class ConnectionOwner(Protocol):
    """What a connection asks of the management interface (`server.Management`; named here so
    this module never imports server.py, which imports it)."""

    password: str | None

    def accept(self, c: Connection) -> bool: ...

    def welcome(self, c: Connection) -> None: ...

    def forget(self, c: Connection) -> None: ...

    def command(self, c: Connection, line: str) -> None: ...

    def multiline_line(self, c: Connection, line: str) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(self, management: ConnectionOwner, log: logging.Logger) -> None:
        self.management = management
        self.log = log
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._in = bytearray()
        self._discarding = False  # inside an over-long line, until its newline
        self.authenticated = management.password is None
        self._tries = 0
        self.closed = False
        # Per-connection switches, as in stock's man_connection.
        self.log_realtime = False
        self.state_realtime = False
        self.echo_realtime = False
        self.bytecount_interval = 0
        self.bytecount_due = 0.0
        self.multiline: tuple[str, int, int, list[str]] | None = None  # client-auth body
        self.client_version = 1  # `version N`

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        try:
            self._greet()
        except Exception:
            self._failed("accepting")

    def _failed(self, what: str) -> None:
        # A bug here must cost this management client, never the tunnel.
        self.log.exception("MANAGEMENT: internal error while %s; client disconnected", what)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _greet(self) -> None:
        assert self.transport is not None
        transport = self.transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        if not self.management.accept(self):
            return
        if self.authenticated:
            self.management.welcome(self)
        else:
            self.write_raw(b"ENTER PASSWORD:")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._receive(data)
        except Exception:
            self._failed("reading a command")

    def _receive(self, data: bytes) -> None:
        self._in += data
        while not self.closed:
            end = self._in.find(b"\n")
            if end < 0:
                if len(self._in) > MAX_LINE:
                    self._in.clear()
                    if not self._discarding:
                        self._discarding = True
                        self.send("ERROR: command line too long")
                return
            raw = bytes(self._in[:end])
            del self._in[: end + 1]
            if self._discarding or end > MAX_LINE:
                if not self._discarding:
                    self.send("ERROR: command line too long")
                self._discarding = False
                continue
            self._line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.management.forget(self)

    # -- lines ---------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        if not self.authenticated:
            self._check_password(line)
            return
        if self.multiline is not None:
            self.management.multiline_line(self, line)
            return
        if line.strip():
            self.management.command(self, line)

    def _check_password(self, line: str) -> None:
        password = self.management.password
        assert password is not None
        if hmac.compare_digest(line.encode(), password.encode()):
            self.authenticated = True
            self.send("SUCCESS: password is correct")
            self.management.welcome(self)
            return
        self.send("ERROR: bad password")
        self._tries += 1
        if self._tries >= PASSWORD_TRIES:
            self.log.warning("MAN: client connection rejected after %d failed password "
                             "attempts", PASSWORD_TRIES)
            self.close()
            return
        self.write_raw(b"ENTER PASSWORD:")

    # -- output --------------------------------------------------------------------------

    def send(self, *lines: str) -> None:
        if lines:
            self.write_raw("".join(f"{line}\r\n" for line in lines).encode("utf-8", "replace"))

    def write_raw(self, data: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > MAX_PENDING:
            # Closed first: the warning below is itself sent to the clients that read.
            self.closed = True
            transport.abort()
            self.log.warning("MANAGEMENT: client %s does not read its output; disconnected",
                             self.peer)
            return
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
