"""Many client sessions on one UDP socket, sans-I/O (OpenVPN's mudp.c + multi.c).

No state exists for a source until it has proved it receives at its address: a client's
HARD_RESET_CLIENT_V2 is answered statelessly with a server session id that is an HMAC of the
client's address, session id and a time slot (the 2.6 cookie, `mudp.c: do_pre_decrypt_check`).
Only a following P_CONTROL_V1/P_ACK_V1 that ACKs our pid 0 *with that session id* creates a
`Session`. Sessions still in their handshake are bounded (`max_half_open`: at the bound the
oldest makes room), and so are clients; `connect-freq-initial` bounds the stateless answers
(refunded per completed three-way handshake). All session timers live in one heap, and
output, timer and event work touches only the sessions that changed: nothing walks all
sessions per event.

Data packets are found by peer-id (P_DATA_V2) and authenticated before the address is trusted:
a client whose address changed ("float") is moved only after its packet decrypted.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from core import Buffer
from tunnel.protocol.codec import ControlPacket, build_control, read_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.cookie import CookieJar
from tunnel.protocol.deadlines import DeadlineHeap
from tunnel.protocol.drops import (
    AUTH_FAILED,
    BAD_SOURCE,
    DATA_DROP_TEXT,
    MALFORMED,
    NO_SESSION,
    RATE_LIMITED,
    REPLAY,
    DropLog,
)
from tunnel.protocol.errors import HandshakeError, ProtocolError
from tunnel.protocol.events import (
    ClientRefused,
    DataChannelReady,
    Event,
    HandshakeComplete,
    Notice,
    SessionClosed,
)
from tunnel.protocol.keystate import KeyPhase
from tunnel.protocol.ratelimit import InitialRateLimit
from tunnel.protocol.session import Session
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN, Verdict
from tunnel.protocol.wrap.base import ControlWrap, Opened
from tunnel.protocol.wrap.tls_crypt_v2 import EARLY_NEG_TLV

Address = tuple[str, int]

_P_DATA_V1 = int(Opcode.P_DATA_V1)
_P_DATA_V2 = int(Opcode.P_DATA_V2)
_HARD_RESET_CLIENT_V2 = int(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2)
_HARD_RESET_CLIENT_V3 = int(Opcode.P_CONTROL_HARD_RESET_CLIENT_V3)
_COOKIE_ECHO_OPCODES = frozenset(
    {int(Opcode.P_CONTROL_V1), int(Opcode.P_ACK_V1), int(Opcode.P_CONTROL_WKC_V1)}
)
_U32 = struct.Struct(">I")


IP = TypeVar("IP", ipaddress.IPv4Address, ipaddress.IPv6Address)


class AddressPool(Generic[IP]):
    """Client addresses: `server`/`ifconfig-pool` (IPv4), `server-ipv6` (IPv6).

    Free addresses wait in a queue (handed out from the front, released to the back) and in a
    set, so that asking whether one is free, which every returning client does, costs the
    same for a pool of 65534 as for 10 (a membership test on the queue walked all of it: a
    /16 pool spent ~10 ms per connecting client). An address taken out of the middle leaves
    its queue entry behind as stale, skipped when it reaches the front.
    """

    def __init__(self, first: IP, last: IP, step: int = 1) -> None:
        # step 4 from base+2: one address per /30, as topology net30 hands them out.
        if int(last) < int(first):
            raise ValueError(f"empty address pool {first}..{last}")
        self._kind: type[IP] = type(first)
        self._queue: deque[int] = deque(range(int(first), int(last) + 1, step))
        self._free: set[int] = set(self._queue)
        self._stale: dict[int, int] = {}  # address -> queue entries of it to skip
        self.size = len(self._queue)
        self._last_of: dict[str, IP] = {}

    def _take(self, address: int) -> None:
        """Out of the free set; its queue entry goes stale."""
        self._free.discard(address)
        self._stale[address] = self._stale.get(address, 0) + 1

    def _pop(self) -> int | None:
        queue, stale = self._queue, self._stale
        while queue:
            address = queue.popleft()
            skip = stale.get(address)
            if skip:
                if skip == 1:
                    del stale[address]
                else:
                    stale[address] = skip - 1
                continue
            self._free.discard(address)
            return address
        return None

    def allocate(self, common_name: str | None = None) -> IP | None:
        """A free address; a client that comes back gets its previous one if it is free, so
        its open connections survive a reconnect (pool.c: ifconfig_pool_acquire by CN)."""
        previous = self._last_of.get(common_name) if common_name else None
        if previous is not None and int(previous) in self._free:
            self._take(int(previous))
            return previous
        number = self._pop()
        if number is None:
            return None
        address = self._kind(number)
        if common_name:
            self._last_of[common_name] = address
        return address

    def release(self, address: IP) -> None:
        # Released addresses go to the back, so a CN's previous address stays free longest.
        number = int(address)
        self._free.add(number)
        self._queue.append(number)

    def reserve(self, common_name: str, address: IP) -> bool:
        """Remember `address` as `common_name`'s (ifconfig-pool-persist): it goes to that CN
        when it comes back and to others only after every never-used address. False when the
        address is not one of the pool's free ones."""
        number = int(address)
        if number not in self._free or common_name in self._last_of:
            return False
        self._take(number)  # to the back of the queue, still free
        self.release(address)
        self._last_of[common_name] = address
        return True

    def peek(self, common_name: str | None = None) -> IP | None:
        """What `allocate(common_name)` would hand out now, without taking it."""
        previous = self._last_of.get(common_name) if common_name else None
        if previous is not None and int(previous) in self._free:
            return previous
        queue, stale = self._queue, self._stale
        while queue:  # stale entries at the front go now: they would be skipped anyway
            address = queue[0]
            skip = stale.get(address)
            if not skip:
                return self._kind(address)
            queue.popleft()
            if skip == 1:
                del stale[address]
            else:
                stale[address] = skip - 1
        return None

    def assignments(self) -> dict[str, IP]:
        """CN -> the address it had last, in the order they were handed out."""
        return dict(self._last_of)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client-config-dir file (or a client-connect script) says about one client."""

    disable: bool = False
    push_reset: bool = False
    push: tuple[str, ...] = ()
    ifconfig_push: ipaddress.IPv4Address | None = None
    iroutes: tuple[ipaddress.IPv4Network, ...] = ()


@dataclass(slots=True)
class ServerSettings:
    session: SessionSettings
    pool: AddressPool[ipaddress.IPv4Address]
    netmask: str = "255.255.255.0"
    # server-ipv6: the clients' IPv6 pool, its prefix length and the server's own address
    # (pushed as `ifconfig-ipv6 ADDR/BITS GATEWAY`).
    pool6: AddressPool[ipaddress.IPv6Address] | None = None
    prefix6: int = 64
    gateway6: ipaddress.IPv6Address | None = None
    # Items pushed to every client before the per-client ones (route-gateway, topology,
    # ping, routes, user `push` lines), in OpenVPN's order.
    push: tuple[str, ...] = ()
    max_clients: int = 1024
    # Sessions still in their handshake, at most (None: max-clients). At the bound the oldest
    # handshake makes room for the new one, so a slow flood of stalled handshakes can delay a
    # legitimate client but never lock it out (stock refuses once max-clients is full).
    max_half_open: int | None = None
    # connect-freq-initial N SECS (stock default 100 10).
    connect_freq_initial: tuple[int, int] = (100, 10)
    # Without duplicate-cn a new connection with a CN already connected replaces the old one.
    duplicate_cn: bool = False
    # client-config-dir (and client-connect): per-client settings by common name, looked up
    # once the client is authenticated; None = refuse the client (ccd-exclusive, a bad file).
    client_config: Callable[[Session], ClientConfig | None] | None = None
    client_to_client: bool = False  # route client -> client packets inside the server
    # subnet: "ifconfig ADDR NETMASK"; net30: "ifconfig ADDR ADDR-1" (its /30's other end);
    # p2p: "ifconfig ADDR SERVER" (server_local, the server's own tunnel address).
    topology: str = "subnet"
    server_local: ipaddress.IPv4Address | None = None
    # Told when a client got its address (after the push list is built) and when a client
    # that had one goes away: learn-address and client-disconnect scripts, issue 11 item 5.
    on_client_connected: Callable[[Session, ipaddress.IPv4Address], None] | None = None
    on_client_gone: Callable[[Session, ipaddress.IPv4Address], None] | None = None


class Server:
    """The sans-I/O server: datagrams in, datagrams out, events, one timer."""

    def __init__(
        self, settings: ServerSettings, now: float, cookie_key: bytes | None = None
    ) -> None:
        self.settings = settings
        self.cookies = CookieJar(cookie_key, hand_window=settings.session.hand_window)
        self.by_addr: dict[Address, Session] = {}
        self.by_peer_id: list[Session | None] = [None] * settings.max_clients
        self.by_vip: dict[int, Session] = {}
        self.vip_of: dict[int, ipaddress.IPv4Address] = {}  # peer-id -> assigned address
        self.by_vip6: dict[bytes, Session] = {}
        self.vip6_of: dict[int, ipaddress.IPv6Address] = {}
        self.pushed_vip: set[int] = set()  # peer-ids whose address came from ifconfig-push
        self.iroutes: list[tuple[ipaddress.IPv4Network, Session]] = []  # longest prefix first
        self._free_peer_ids: deque[int] = deque(range(settings.max_clients))
        self._stateless_out: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self.initial_limit = InitialRateLimit(*settings.connect_freq_initial)
        # Sessions in their handshake, oldest first (an insertion-ordered dict as a set).
        self._half_open: dict[Session, None] = {}
        self._max_half_open = min(settings.max_half_open or settings.max_clients,
                                  settings.max_clients)
        # Timers of all sessions in one heap; sessions touched since the last look may have
        # datagrams to send (`_to_flush`) and a new deadline (`_to_retime`). So output, timer
        # and event work is per touched session, never a walk over all of them.
        self._deadlines: DeadlineHeap[Session] = DeadlineHeap()
        self._to_flush: dict[Session, None] = {}
        self._to_retime: dict[Session, None] = {}
        self.by_cn: dict[str, Session] = {}  # without duplicate-cn: the one session of a CN
        # Told ("identified" | "floated" | "removed", session) as it happens (PeerRegistry).
        self.watchers: list[Callable[[str, Session], None]] = []
        # management client-auth bodies, per approved session (merged into its push)
        self._auth_config: dict[Session, ClientConfig] = {}
        self.drops = DropLog(self._events)
        self.refused = 0

    # -- input -----------------------------------------------------------------------------

    def receive(self, buf: Buffer, addr: Address, now: float) -> Verdict:
        """One datagram: TO_TUN (buf now holds an IP packet), CONSUMED or DROPPED."""
        data = buf.data
        if not data:
            self.drops.drop(MALFORMED, addr, "empty datagram", now)
            return DROPPED
        opcode = data[0] >> 3
        if opcode == _P_DATA_V2:
            if len(data) < 4:
                self.drops.drop(MALFORMED, addr, "data packet shorter than its header", now)
                return DROPPED
            peer_id = (data[1] << 16) | (data[2] << 8) | data[3]
            session = self.by_peer_id[peer_id] if peer_id < len(self.by_peer_id) else None
            return self._receive_data(session, buf, addr, now)
        if opcode == _P_DATA_V1:
            return self._receive_data(self.by_addr.get(addr), buf, addr, now)
        session = self.by_addr.get(addr)
        if session is not None and not self._from_new_client(session, data):
            refused = session.dropped_control
            session.receive_wrapped(buf, now)
            if session.dropped_control != refused:
                self.drops.drop(session.control_drop, addr,
                                "control packet not valid for its session", now)
            self._collect(session)
            return CONSUMED
        # Unknown source, or a client that restarted on the same address and port: it gets the
        # stateless cookie treatment; the old session is replaced only once it echoes it.
        self._receive_stateless(buf, addr, now)
        return CONSUMED

    @staticmethod
    def _from_new_client(session: Session, data: memoryview) -> bool:
        if len(data) < 9 or session.remote_sid is None:
            return False
        opcode = data[0] >> 3
        if opcode in (_HARD_RESET_CLIENT_V2, _HARD_RESET_CLIENT_V3):
            return True
        return opcode in _COOKIE_ECHO_OPCODES and data[1:9] != session.remote_sid

    def _receive_data(
        self, session: Session | None, buf: Buffer, addr: Address, now: float
    ) -> Verdict:
        if session is None:
            self.drops.drop(NO_SESSION, addr, "data packet for no session", now)
            return DROPPED
        verdict = session.decrypt(buf, now)
        if verdict == DROPPED:
            self.drops.drop(session.last_drop, addr, DATA_DROP_TEXT[session.last_drop], now)
            return DROPPED
        if verdict == TO_TUN and not self._source_allowed(session, buf):
            self.drops.drop(BAD_SOURCE, addr, "packet with a source address not the client's",
                            now)
            return DROPPED
        if session.remote_addr != addr:
            self._float(session, addr)
        if verdict == CONSUMED:
            self.touch(session)  # a ping or OCC: an OCC reply may be queued
        elif self.settings.client_to_client and verdict == TO_TUN:
            return self._client_to_client(session, buf, now)
        return verdict

    def _ifconfig_second(self, vip: ipaddress.IPv4Address) -> str:
        topology = self.settings.topology
        if topology == "net30":
            return str(vip - 1)
        if topology == "p2p" and self.settings.server_local is not None:
            return str(self.settings.server_local)
        return self.settings.netmask

    def _client_to_client(self, session: Session, buf: Buffer, now: float) -> Verdict:
        """client-to-client: a packet for another client goes straight to it, re-sealed in
        place for that client (multi.c: multi_process_incoming_link), never to the TUN."""
        other = self.route(buf)
        if other is None or other is session:
            return TO_TUN
        if other.encrypt(buf, now):
            self._stateless_out.append((bytes(buf.data), other.remote_addr))
        return CONSUMED  # the caller's control step sends the queued datagram

    def _source_allowed(self, session: Session, buf: Buffer) -> bool:
        """A client may only send from the address we gave it (multi.c: 'bad source address')."""
        data = buf.data
        peer_id = session.peer_id if session.peer_id is not None else -1
        version = data[0] >> 4 if data else 0
        if version == 4 and len(data) >= 20:
            vip = self.vip_of.get(peer_id)
            return vip is not None and _U32.unpack_from(data, 12)[0] == int(vip)
        if version == 6 and len(data) >= 40:
            vip6 = self.vip6_of.get(peer_id)
            return vip6 is not None and data[8:24] == vip6.packed
        return False

    def _float(self, session: Session, addr: Address) -> None:
        # Only reached after the packet authenticated, so the new address is the client's.
        self.by_addr.pop(session.remote_addr, None)
        session.remote_addr = addr
        self.by_addr[addr] = session
        for watcher in self.watchers:
            watcher("floated", session)

    def _receive_stateless(self, buf: Buffer, addr: Address, now: float) -> None:
        # The wrap's tag check (tls-auth/tls-crypt/-v2) comes first and keeps no state: a
        # packet with the wrong key costs the check and nothing else (ssl_pkt.c:
        # tls_pre_decrypt_lite()). Replay is checked by the session it may create.
        opened = self.settings.session.control_wrap.open(buf)
        if opened is None:
            self._drop(addr, "control packet failed the control-channel wrap check", now,
                       AUTH_FAILED)
            return
        try:
            packet = read_control(buf)
        except ProtocolError as exc:
            self._drop(addr, str(exc), now)
            return
        if packet.key_id != 0:
            self._drop(addr, "unknown source sent a packet for key_id > 0", now, NO_SESSION)
            return
        if packet.opcode == Opcode.P_CONTROL_HARD_RESET_CLIENT_V2 or (
            packet.opcode == Opcode.P_CONTROL_HARD_RESET_CLIENT_V3 and opened.early_negotiation
        ):
            # tls-crypt-v2: only a client that will resend its key (early negotiation) gets
            # the stateless answer; stock keeps state for older ones unless force-cookie.
            self._answer_reset(packet, addr, now, opened)
        elif packet.opcode in (Opcode.P_CONTROL_V1, Opcode.P_ACK_V1):
            self._maybe_create_session(packet, addr, now, opened)
        else:
            self._drop(addr, f"{packet.opcode.name} from an unknown source", now, NO_SESSION)

    def _answer_reset(
        self, packet: ControlPacket, addr: Address, now: float, opened: Opened
    ) -> None:
        allowed, note = self.initial_limit.check(now)
        if not allowed:
            self._drop(addr, note or "connect-freq-initial exceeded", now, RATE_LIMITED)
            return
        if note is not None:
            self._events.append(Notice(note))
        server_sid = self.cookies.server_session_id(addr, packet.session_id, now)
        answer = ControlPacket(
            opcode=Opcode.P_CONTROL_HARD_RESET_SERVER_V2,
            key_id=0,
            session_id=server_sid,
            acks=(0,),
            remote_session_id=packet.session_id,
            packet_id=0,
            payload=EARLY_NEG_TLV if opened.early_negotiation else b"",
        )
        self._stateless_out.append(
            (self._seal_stateless(build_control(answer), now, opened.wrap), addr)
        )

    def _seal_stateless(self, datagram: bytes, now: float, wrap: ControlWrap) -> bytes:
        """Wrap our stateless reset: packet-id 1, as stock's reset_packet_id_send() + write."""
        if not wrap.has_packet_id:
            return datagram
        buf = Buffer(wrap.frame.buffer_size)
        buf.reset(wrap.frame.headroom)
        buf.append(datagram)
        offset = self.settings.session.clock_offset
        wrap.seal(buf, 1, int(now + offset) & 0xFFFFFFFF)
        return bytes(buf.data)

    def _maybe_create_session(
        self, packet: ControlPacket, addr: Address, now: float, opened: Opened
    ) -> None:
        echoed = packet.remote_session_id
        # Our only packet so far is the reset (pid 0), so a fresh client ACKs exactly that, and
        # its first control packet is pid 1. Anything else (a late ACK of a session we already
        # dropped) must not create state.
        fresh = packet.acks == (0,) and packet.packet_id in (None, 1)
        if (
            not fresh
            or echoed is None
            or not self.cookies.verify(addr, packet.session_id, echoed, now)
        ):
            self._drop(addr, f"{packet.opcode.name} with invalid or missing session id", now,
                       NO_SESSION)
            return
        old = self.by_addr.get(addr)
        if old is not None:
            # The client at this address restarted (it proved it receives here): the new
            # session replaces the old one at once instead of after its ping-restart.
            old.close(now, "client restarted from the same address")
            self._collect(old)
        s = self.settings.session
        refusal = s.control_wrap.admit(opened, now + s.clock_offset)
        if refusal is not None:
            self.refused += 1
            self._drop(addr, refusal, now, AUTH_FAILED)
            self._events.append(ClientRefused(addr, refusal))
            return
        channel = s.control_wrap.channel(
            replay_window=s.replay_window, replay_seconds=s.replay_seconds,
            clock_offset=s.clock_offset,
        )
        # The proving packet counts in the new session's replay window, and our stateless
        # reset used send packet-id 1 (ssl.c: session_skip_to_pre_start()).
        channel.skip_send(1)
        if not channel.accept(opened, now):
            self._drop(addr, "replayed control packet", now, REPLAY)
            return
        if not self._make_room(addr, now):
            return
        # A completed three-way handshake counts against connect-freq-initial no more (stock).
        self.initial_limit.refund()
        peer_id = self._free_peer_ids.popleft()
        session = Session(
            s, remote_addr=addr, now=now, local_sid=echoed, peer_id=peer_id, wrap_channel=channel,
            push_items=self._push_items_for,
        )
        self.by_addr[addr] = session
        self.by_peer_id[peer_id] = session
        self._half_open[session] = None
        session.accept(packet, now)
        self._collect(session)

    def _make_room(self, addr: Address, now: float) -> bool:
        """Room for one more session: at the half-open bound (or out of peer-ids) the oldest
        handshake still running is ended; with every slot an established client, refused."""
        if len(self._half_open) < self._max_half_open and self._free_peer_ids:
            return True
        if not self._half_open:
            self._drop(addr, f"MULTI: new incoming connection would exceed maximum number of "
                       f"clients ({self.settings.max_clients})", now, RATE_LIMITED)
            return False
        oldest = next(iter(self._half_open))
        self._drop(oldest.remote_addr, f"{len(self._half_open)} sessions in their handshake "
                   f"(the bound): the oldest is dropped for a new one from "
                   f"{addr[0]}:{addr[1]}", now, RATE_LIMITED)
        oldest.close(now, "handshake not completed before newer ones needed its slot")
        self._collect(oldest)
        return bool(self._free_peer_ids)

    def connection_lost(self, addr: Address, now: float, reason: str) -> None:
        """A connection-oriented transport lost the link to `addr`: its session ends (stock:
        a TCP client instance is torn down with its connection)."""
        session = self.by_addr.get(addr)
        if session is not None:
            session.close(now, reason)
            self._collect(session)

    def _drop(self, addr: Address, reason: str, now: float, cause: str = MALFORMED) -> None:
        self.drops.drop(cause, addr, reason, now)

    @property
    def dropped(self) -> int:
        return self.drops.total

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    # -- data towards clients (hot) ----------------------------------------------------------

    def route(self, buf: Buffer) -> Session | None:
        """The session an IP packet from the TUN device is for (by destination address)."""
        data = buf.data
        if len(data) < 20:
            return None
        version = data[0] >> 4
        if version == 4:
            session = self.by_vip.get(_U32.unpack_from(data, 16)[0])
            if session is None and self.iroutes:
                return self._iroute(_U32.unpack_from(data, 16)[0])
            return session
        if version == 6 and len(data) >= 40:
            return self.by_vip6.get(bytes(data[24:40]))
        return None

    def encrypt(self, buf: Buffer, now: float) -> Address | None:
        """Seal a TUN packet for its client in place; the address to send it to, or None."""
        data = buf.data
        if len(data) >= 20 and data[0] >> 4 == 4:  # route() inlined for IPv4: a call less
            session = self.by_vip.get(_U32.unpack_from(data, 16)[0])
            if session is None and self.iroutes:
                session = self._iroute(_U32.unpack_from(data, 16)[0])
        else:
            session = self.route(buf)
        if session is None or not session.encrypt(buf, now):
            return None
        return session.remote_addr

    def _iroute(self, destination: int) -> Session | None:
        for network, session in self.iroutes:
            if destination & int(network.netmask) == int(network.network_address):
                return session
        return None

    # -- output, timers, events -------------------------------------------------------------

    def touch(self, session: Session) -> None:
        """The session changed: it may have datagrams to send and a new deadline. Everything
        the server does to a session calls it; whoever drives a session directly
        (`session.renegotiate(now)`) calls it after."""
        self._to_flush[session] = None
        self._to_retime[session] = None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = self._stateless_out
        self._stateless_out = []
        touched, self._to_flush = self._to_flush, {}
        for session in touched:
            for datagram in session.datagrams_to_send(now):
                out.append((datagram, session.remote_addr))
            self._to_retime[session] = None  # sending arms its retransmit timers
        return out

    def get_timer(self) -> float | None:
        retime, self._to_retime = self._to_retime, {}
        deadlines = self._deadlines
        for session in retime:
            deadlines.schedule(session, session.get_timer())
        return deadlines.earliest()

    def handle_timer(self, now: float) -> None:
        for session in self._deadlines.pop_due(now):
            session.handle_timer(now)
            self._collect(session)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> None:
        for session in list(self.by_addr.values()):
            session.close(now, "server shutting down")
            self._collect(session)

    def authorize(self, session: Session, auth_id: int, approve: bool, reason: str,
                  client_reason: str | None, now: float,
                  config: ClientConfig | None = None) -> bool:
        """The verdict on a deferred authentication (management client-auth/client-deny);
        `config`: the client-auth body, applied after any client-config-dir file."""
        if approve and config is not None and auth_id in session.auth_pending:
            self._auth_config[session] = config
        done = session.authorize(auth_id, approve, reason, client_reason, now)
        self._collect(session)
        return done

    def kill(self, session: Session, message: str | None, reason: str, now: float) -> None:
        """End one client at once (management `kill`/`client-kill`); its last words flushed."""
        if message is None:
            session.close(now, reason)  # RESTART only with explicit-exit-notify, as stock
        else:
            session.kill(message, reason, now)
        self._collect(session)

    def _collect(self, session: Session) -> None:
        self.touch(session)
        while (event := session.next_event()) is not None:
            if isinstance(event, (HandshakeComplete, DataChannelReady)):
                if isinstance(event, DataChannelReady):
                    self._half_open.pop(session, None)  # established: no longer half-open
                for watcher in self.watchers:
                    watcher("identified", session)
                self._events.append(event)
            elif isinstance(event, SessionClosed):
                if session.send_key is None or session.auth_failed:
                    self.refused += 1
                    self._events.append(ClientRefused(session.remote_addr, event.reason))
                self._events.append(event)
                # Keep the session one more round so its last control packets still go out.
                self._remove(session)
            else:
                self._events.append(event)

    def _remove(self, session: Session) -> None:
        # Everything attached to the session goes with it: a half-open one expiring at
        # hand-window leaves nothing behind (issue 8: 50 KB per session stayed).
        self._half_open.pop(session, None)
        self._deadlines.remove(session)
        self._to_flush.pop(session, None)
        self._to_retime.pop(session, None)
        cn = session.peer_common_name
        if cn is not None and self.by_cn.get(cn) is session:
            del self.by_cn[cn]
        if self.by_addr.get(session.remote_addr) is session:
            del self.by_addr[session.remote_addr]
        peer_id = session.peer_id
        if peer_id is not None and self.by_peer_id[peer_id] is session:
            self.by_peer_id[peer_id] = None
            vip = self.vip_of.pop(peer_id, None)
            if vip is not None:
                if self.settings.on_client_gone is not None:
                    self.settings.on_client_gone(session, vip)
                self.by_vip.pop(int(vip), None)
                if peer_id in self.pushed_vip:
                    self.pushed_vip.discard(peer_id)  # not a pool address: nothing to return
                else:
                    self.settings.pool.release(vip)
            self.iroutes = [(net, s) for net, s in self.iroutes if s is not session]
            vip6 = self.vip6_of.pop(peer_id, None)
            if vip6 is not None and self.settings.pool6 is not None:
                self.by_vip6.pop(vip6.packed, None)
                self.settings.pool6.release(vip6)
            self._free_peer_ids.append(peer_id)
        # Flush what the session still had to say (AUTH_FAILED, RESTART) before forgetting it.
        last = max(session.last_rx, session.last_tx)
        self._stateless_out.extend(
            (d, session.remote_addr) for d in session.datagrams_to_send(last)
        )
        self._auth_config.pop(session, None)
        for watcher in self.watchers:
            watcher("removed", session)
        session.release()

    def _push_items_for(self, session: Session) -> list[str]:
        """The push list of one client; its address is assigned here, after authentication,
        when its common name is known (multi.c: multi_client_connect_late_setup)."""
        peer_id = session.peer_id
        if peer_id is None:
            raise HandshakeError("session without a peer-id")
        client = ClientConfig()
        if self.settings.client_config is not None:
            found = self.settings.client_config(session)
            if found is None:
                raise HandshakeError("client-config-dir: no usable config for this client")
            client = found
        extra = self._auth_config.get(session)
        if extra is not None:
            client = ClientConfig(
                client.disable or extra.disable, client.push_reset or extra.push_reset,
                client.push + extra.push, extra.ifconfig_push or client.ifconfig_push,
                client.iroutes + extra.iroutes)
        if client.disable:
            raise HandshakeError("client-config-dir: client is disabled ('disable')")
        vip = self.vip_of.get(peer_id)
        if vip is None:
            vip = self._assign_address(session, peer_id, client)
        items = [] if client.push_reset else list(self.settings.push)
        items.extend(client.push)
        vip6 = self.vip6_of.get(peer_id)
        if vip6 is not None:
            # Stock order: ifconfig-ipv6, then ifconfig (push.c: prepare_push_reply).
            items.append(f"ifconfig-ipv6 {vip6}/{self.settings.prefix6} {self.settings.gateway6}")
        items.append(f"ifconfig {vip} {self._ifconfig_second(vip)}")
        if self.settings.on_client_connected is not None:
            self.settings.on_client_connected(session, vip)
        return items

    def _assign_address(
        self, session: Session, peer_id: int, client: ClientConfig | None = None
    ) -> ipaddress.IPv4Address:
        cn = session.peer_common_name
        if cn is not None and not self.settings.duplicate_cn:
            other = self.by_cn.get(cn)
            if other is not None and other is not session:
                # multi.c: without duplicate-cn the newer connection wins.
                other.close(session.last_rx, f"replaced by a new connection with CN {cn}")
                self._collect(other)
            self.by_cn[cn] = session
        if client is not None and client.ifconfig_push is not None:
            vip = client.ifconfig_push
            holder = self.by_vip.get(int(vip))
            if holder is not None and holder is not session:
                raise HandshakeError(f"ifconfig-push {vip}: the address is in use")
            self.pushed_vip.add(peer_id)
        else:
            allocated = self.settings.pool.allocate(cn)
            if allocated is None:
                raise HandshakeError("no free address in the server's pool")
            vip = allocated
        self.by_vip[int(vip)] = session
        self.vip_of[peer_id] = vip
        if client is not None and client.iroutes:
            self.iroutes.extend((net, session) for net in client.iroutes)
            self.iroutes.sort(key=lambda item: item[0].prefixlen, reverse=True)
        pool6 = self.settings.pool6
        if pool6 is not None:
            vip6 = pool6.allocate(cn)
            if vip6 is None:
                raise HandshakeError("no free address in the server's IPv6 pool")
            self.by_vip6[vip6.packed] = session
            self.vip6_of[peer_id] = vip6
        return vip

    @property
    def sessions(self) -> list[Session]:
        return list(self.by_addr.values())

    def active_sessions(self) -> list[Session]:
        return [
            s
            for s in self.by_addr.values()
            if s.primary is not None and s.primary.phase is KeyPhase.ACTIVE
        ]
