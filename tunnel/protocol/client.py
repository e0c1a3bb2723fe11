"""The client side, sans-I/O, with the same shape as `Server` so the I/O layer drives both alike.

A client talks to one remote at a time. When its session ends with `restart` (ping-restart,
RESTART from the server, a failed handshake) it starts a fresh session on the next remote after
a back-off, like OpenVPN's connection loop (`init.c: next_connection_entry`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from core import Buffer
from tunnel.protocol.constants import Opcode
from tunnel.protocol.events import Event, SessionClosed
from tunnel.protocol.session import CONSUMED, DROPPED, Session
from tunnel.protocol.settings import SessionSettings

Address = tuple[str, int]

_P_DATA_V1 = int(Opcode.P_DATA_V1)
_P_DATA_V2 = int(Opcode.P_DATA_V2)
# connect-retry: OpenVPN waits 1 s, doubling to 300 s (here capped lower: a test-bed default).
_RETRY_INITIAL = 1.0
_RETRY_MAX = 60.0


class Client:
    """One client connection with reconnects; remotes are tried in turn."""

    def __init__(
        self,
        settings: SessionSettings,
        remotes: Sequence[Address],
        now: float,
        *,
        reconnect: bool = True,
    ) -> None:
        if not remotes:
            raise ValueError("a client needs at least one remote")
        self.settings = settings
        self.remotes = list(remotes)
        self.reconnect = reconnect
        self._remote_index = 0
        self._retry_delay = _RETRY_INITIAL
        self._reconnect_at: float | None = None
        self._events: deque[Event] = deque()
        self.finished: SessionClosed | None = None
        self.connects = 0
        self.dropped = 0
        self.session = self._start(now)

    @property
    def remote(self) -> Address:
        return self.session.remote_addr

    def _start(self, now: float) -> Session:
        session = Session(self.settings, remote_addr=self.remotes[self._remote_index], now=now)
        session.connect(now)
        self.connects += 1
        return session

    # -- the role-agnostic endpoint interface -------------------------------------------------

    def receive(self, buf: Buffer, addr: Address, now: float) -> int:
        session = self.session
        if addr != session.remote_addr:
            self.dropped += 1
            return DROPPED
        data = buf.data
        if not data:
            self.dropped += 1
            return DROPPED
        opcode = data[0] >> 3
        if opcode in (_P_DATA_V2, _P_DATA_V1):
            return session.decrypt(buf, now)
        session.receive_control(data, now)
        self._collect(now)
        return CONSUMED

    def encrypt(self, buf: Buffer, now: float) -> Address | None:
        session = self.session
        if not session.encrypt(buf, now):
            return None
        return session.remote_addr

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        addr = self.session.remote_addr
        return [(d, addr) for d in self.session.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        if self._reconnect_at is not None:
            return self._reconnect_at
        return self.session.get_timer()

    def handle_timer(self, now: float) -> None:
        if self._reconnect_at is not None:
            if now >= self._reconnect_at:
                self._reconnect_at = None
                self.session = self._start(now)
            return
        self.session.handle_timer(now)
        self._collect(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> None:
        self.reconnect = False
        self.session.close(now)
        self._collect(now)

    def _collect(self, now: float) -> None:
        while (event := self.session.next_event()) is not None:
            self._events.append(event)
            if isinstance(event, SessionClosed):
                self._session_closed(event, now)

    def _session_closed(self, event: SessionClosed, now: float) -> None:
        if self.session.send_key is not None:
            self._retry_delay = _RETRY_INITIAL  # it had worked: reconnect promptly
        if not (event.restart and self.reconnect):
            self.finished = event
            return
        self._remote_index = (self._remote_index + 1) % len(self.remotes)
        # The timer (get_timer) fires the reconnect after the back-off.
        self._reconnect_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)

    def active(self) -> bool:
        return self.session.send_key is not None and self.session.closed is None
