"""The client side, sans-I/O, with the same shape as `Server` so the I/O layer drives both alike.

A client talks to one remote at a time. When its session ends with `restart` (ping-restart,
RESTART from the server, a failed handshake) it starts a fresh session on the next remote after
a back-off, like OpenVPN's connection loop (`init.c: next_connection_entry`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from core import Buffer
from tunnel.protocol.constants import Opcode
from tunnel.protocol.datacipher import DataCipherKey
from tunnel.protocol.drops import DATA_DROP_TEXT, MALFORMED, NO_SESSION, DropLog
from tunnel.protocol.events import Event, SessionClosed
from tunnel.protocol.memory import IterationArenas
from tunnel.protocol.rows import ReceivedRows, SegmentRows
from tunnel.protocol.session import Session
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.traffic import Traffic
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN, Verdict

Address = tuple[str, int]

_P_DATA_V1 = int(Opcode.P_DATA_V1)
_P_DATA_V2 = int(Opcode.P_DATA_V2)
# connect-retry: OpenVPN waits 1 s, doubling to 300 s (here capped lower: a test-bed default).
_RETRY_INITIAL = 1.0
_RETRY_MAX = 60.0
# init.c socket_restart_pause: the back-off starts after 5 unsuccessful tries per remote.
_TRIES_BEFORE_BACKOFF = 5


@dataclass
class AuthTokenStore:
    """The auth-token a server pushed, as (username or None, token); None: none."""

    token: tuple[str | None, str] | None = field(default=None, repr=False)


class Client:
    """One client connection with reconnects; remotes are tried in turn."""

    def __init__(
        self,
        settings: SessionSettings,
        remotes: Sequence[Address],
        now: float,
        *,
        reconnect: bool = True,
        retry: tuple[float, float] | None = None,
        poll_timeout: float = 0.0,
        max_tries: int = 0,
        per_remote: Sequence[SessionSettings] | None = None,
        per_remote_timing: Sequence[tuple[tuple[float, float], float]] | None = None,
        token_store: AuthTokenStore | None = None,
    ) -> None:
        if not remotes:
            raise ValueError("a client needs at least one remote")
        self.settings = settings
        self.remotes = list(remotes)
        # Settings per remote when they differ (a TCP remote's options string and MSS).
        self.per_remote = list(per_remote) if per_remote is not None else None
        if self.per_remote is not None and len(self.per_remote) != len(self.remotes):
            raise ValueError("per_remote needs one SessionSettings per remote")
        self.reconnect = reconnect
        self._remote_index = 0
        self._retry_delay = _RETRY_INITIAL
        # connect-retry N MAX / server-poll-timeout / connect-retry-max, OpenVPN's semantics
        # (None: the older fixed back-off above, which callers without a config rely on).
        self.retry = retry
        self.poll_timeout = poll_timeout
        # <connection> blocks: ((connect-retry, MAX), connect-timeout) of each remote.
        self.per_remote_timing = list(per_remote_timing) if per_remote_timing else None
        if self.per_remote_timing is not None and len(self.per_remote_timing) != len(remotes):
            raise ValueError("per_remote_timing needs one entry per remote")
        self.max_tries = max_tries
        self.unsuccessful = 0  # attempts since the last one that worked
        self._poll_expired = False
        self._reconnect_at: float | None = None
        self._events: deque[Event] = deque()
        self.finished: SessionClosed | None = None
        self.connects = 0
        self.drops = DropLog(self._events)
        # Everything on the link and the device, across reconnects (status, bytecount).
        self.traffic = Traffic()
        # The per-iteration arenas (memory.py), as the server's; the client takes none yet.
        self.iteration = IterationArenas()
        # A pushed auth-token: a store the caller may share across Clients (stock keeps it
        # for the process: SIGUSR1 restarts too), emptied when the server refuses it.
        self.token_store = token_store if token_store is not None else AuthTokenStore()
        # While True the next reconnect waits (the app is getting credentials again); the
        # caller re-arms the timer when it clears it.
        self.hold = False
        self.session = self._start(now)

    @property
    def remote(self) -> Address:
        return self.session.remote_addr

    @property
    def remote_index(self) -> int:
        """Which of `remotes` the current session talks to (the transport follows it)."""
        return self._remote_index

    def connection_lost(self, now: float, reason: str) -> None:
        """The transport lost (or could not make) the connection: restart on the next remote."""
        self.session.link_lost(now, reason)
        self._collect(now)

    def _poll_deadline(self) -> float | None:
        # server-poll-timeout: no packet at all from this remote since we started talking.
        session = self.session
        poll_timeout = self.poll_timeout
        if self.per_remote_timing is not None:
            poll_timeout = self.per_remote_timing[self._remote_index][1]
        if poll_timeout <= 0 or session.remote_sid is not None or session.closed:
            return None
        return session.created_at + poll_timeout

    def _start(self, now: float) -> Session:
        index = self._remote_index
        settings = self.per_remote[index] if self.per_remote is not None else self.settings
        session = Session(settings, remote_addr=self.remotes[index], now=now)
        session.auth_token = self.token_store.token  # kept across reconnects, as stock's
        session.connect(now)
        self.connects += 1
        return session

    # -- the role-agnostic endpoint interface -------------------------------------------------

    def receive(self, buf: Buffer, addr: Address, now: float) -> Verdict:
        session = self.session
        traffic = self.traffic
        data = buf.data
        traffic.link_rx += len(data)
        traffic.link_rx_packets += 1
        if addr != session.remote_addr:
            self.drops.drop(NO_SESSION, addr, "packet from an address that is not the server's",
                            now)
            return DROPPED
        if not data:
            self.drops.drop(MALFORMED, addr, "empty datagram", now)
            return DROPPED
        opcode = data[0] >> 3
        if opcode in (_P_DATA_V2, _P_DATA_V1):
            return self._decrypted(buf, session.decrypt(buf, now), now)
        refused = session.dropped_control
        session.receive_wrapped(buf, now)
        if session.dropped_control != refused:
            self.drops.drop(session.control_drop, addr, "control packet not valid for its session",
                            now)
        self._collect(now)
        return CONSUMED

    def _decrypted(self, buf: Buffer, verdict: Verdict, now: float) -> Verdict:
        """`receive` after the session opened (or refused) a data datagram from the server:
        the counters and the drop report."""
        if verdict == TO_TUN:
            self.traffic.tun_tx += len(buf)
        elif verdict == DROPPED:
            session = self.session
            self.drops.drop(session.last_drop, session.remote_addr,
                            DATA_DROP_TEXT[session.last_drop], now)
        return verdict

    # -- what the lone-packet lane (tunnel/io/lane.py) hands back: `receive`'s other branches

    def lane_refused(self, key: DataCipherKey, buf: Buffer, size: int, now: float) -> None:
        """The lane read a data datagram of `size` bytes from the server that `key` refused
        (it counted why on the key): `receive`'s DROPPED branch."""
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += 1
        self._decrypted(buf, self.session._data_dropped(key), now)

    def lane_opened(self, buf: Buffer, key: DataCipherKey, size: int, now: float) -> Verdict:
        """The lane opened a datagram of `size` bytes from the server with `key` and left the
        payload in `buf` for the session (a keepalive, OCC, a SYN to clamp): `receive` from
        its open on."""
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += 1
        return self._decrypted(buf, self.session.opened(buf, key, now), now)

    def open_rows(self, rows: ReceivedRows, addr: Address, now: float) -> list[int] | None:
        """`receive` for a GRO run of data datagrams of one size at once: per row its
        verdict; None, with nothing done, when the run is not for this path (the caller then
        takes the datagrams one by one through `receive`)."""
        session = self.session
        if addr != session.remote_addr:
            return None
        verdicts = session.open_rows(rows, now)
        if verdicts is None:
            return None
        count = rows.count
        traffic = self.traffic
        traffic.link_rx_packets += count
        traffic.link_rx += count * rows.segment
        delivered = verdicts.count(TO_TUN)
        traffic.tun_tx += delivered * rows.plain_size
        if DROPPED in verdicts:
            drops = self.drops
            for cause in session.row_drops:
                drops.drop(cause, addr, DATA_DROP_TEXT[cause], now)
        return verdicts

    def encrypt(self, buf: Buffer, now: float) -> Address | None:
        session = self.session
        size = len(buf)
        if not session.encrypt(buf, now):
            return None
        traffic = self.traffic
        traffic.tun_rx += size
        traffic.link_tx += len(buf)
        traffic.link_tx_packets += 1
        return session.remote_addr

    def seal_segments(self, rows: SegmentRows, now: float) -> Address | None:
        """`encrypt` for all segments of one TSO super-packet at once; None with nothing done
        (the caller then takes them one by one through `encrypt`)."""
        session = self.session
        if not session.seal_segments(rows, now):
            return None
        count = rows.count
        traffic = self.traffic
        traffic.tun_rx += rows.plain_bytes
        traffic.link_tx += rows.plain_bytes + count * rows.overhead
        traffic.link_tx_packets += count
        return session.remote_addr

    def end_iteration(self) -> None:
        """The event-loop iteration is over (the client takes nothing per iteration yet)."""
        self.iteration.end()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        addr = self.session.remote_addr
        out = [(d, addr) for d in self.session.datagrams_to_send(now)]
        if out:
            traffic = self.traffic
            traffic.link_tx += sum(len(d) for d, _ in out)
            traffic.link_tx_packets += len(out)
        return out

    def get_timer(self) -> float | None:
        if self._reconnect_at is not None:
            return None if self.hold else self._reconnect_at
        timer = self.session.get_timer()
        poll = self._poll_deadline()
        if poll is not None and (timer is None or poll < timer):
            return poll
        return timer

    def handle_timer(self, now: float) -> None:
        if self._reconnect_at is not None:
            if now >= self._reconnect_at and not self.hold:
                self._reconnect_at = None
                self.session.release()  # freed now, not at the next full collection
                self.session = self._start(now)
            return
        poll = self._poll_deadline()
        if poll is not None and now >= poll:
            self._poll_expired = True
            self.session.link_lost(now, "Server poll timeout, restarting")
            self._collect(now)
            return
        self.session.handle_timer(now)
        self._collect(now)

    @property
    def dropped(self) -> int:
        return self.drops.total

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
        session = self.session
        self.token_store.token = None if session.token_rejected else session.auth_token
        worked = session.send_key is not None
        if worked:
            self._retry_delay = _RETRY_INITIAL  # it had worked: reconnect promptly
            self.unsuccessful = 0
        else:
            self.unsuccessful += 1
        if not (event.restart and self.reconnect):
            self.finished = event
            return
        if self.max_tries and self.unsuccessful >= self.max_tries * len(self.remotes):
            self.finished = SessionClosed(
                f"All connections have been connect-retry-max ({self.max_tries}) times "
                "unsuccessful, exiting", False, event.peer_common_name,
            )
            self._events.append(self.finished)
            return
        if not session.auth_rejected:  # after AUTH_FAILED the same remote (no_advance)
            self._remote_index = (self._remote_index + 1) % len(self.remotes)
        # The timer (get_timer) fires the reconnect after the back-off.
        self._reconnect_at = now + self._pause()
        self._poll_expired = False

    def _pause(self) -> float:
        if self.retry is None:
            delay = self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)
            return delay
        if self._poll_expired:
            return 0.0  # init.c: after a server poll timeout the next remote is tried at once
        initial, maximum = self.retry
        if self.per_remote_timing is not None:
            initial, maximum = self.per_remote_timing[self._remote_index][0]
        backoff = self.unsuccessful // len(self.remotes) - (_TRIES_BEFORE_BACKOFF - 1)
        delay = initial
        if backoff > 0:
            delay = max(initial, 1.0) * (1 << min(backoff, 15))
        return min(delay, maximum) if backoff > 0 else delay
