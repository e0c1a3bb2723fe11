"""Many client sessions on one UDP socket, sans-I/O (OpenVPN's mudp.c + multi.c).

No state exists for a source until it has proved it receives at its address: a client's
HARD_RESET_CLIENT_V2 is answered statelessly with a server session id that is an HMAC of the
client's address, session id and a time slot (the 2.6 cookie, `mudp.c: do_pre_decrypt_check`).
Only a following P_CONTROL_V1/P_ACK_V1 that ACKs our pid 0 *with that session id* creates a
`Session`. Sessions still in their handshake are bounded (`max_half_open`: at the bound the
oldest makes room), and so are clients; `connect-freq-initial` bounds the stateless answers
(refunded per completed three-way handshake). All session timers live in one heap, and
output, timer and event work touches only the sessions that changed: nothing walks all
sessions per event. The sessions and everything the server finds them by live in one
`PeerTable` (peertable.py), changed only through its add/assign/move/remove.

Data packets are found by peer-id (P_DATA_V2) and authenticated before the address is trusted:
a client whose address changed ("float") is moved only after its packet decrypted.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core import Buffer, BufferPool
from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.clientconfig import ClientConfig
from tunnel.protocol.codec import ControlPacket, read_control, write_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.cookie import CookieJar
from tunnel.protocol.datacipher import DataCipherKey
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
    Notice,
    SessionClosed,
)
from tunnel.protocol.memory import IterationArenas
from tunnel.protocol.peertable import PeerEntry, PeerTable
from tunnel.protocol.ratelimit import InitialRateLimit
from tunnel.protocol.rows import ReceivedRows, SegmentRows
from tunnel.protocol.session import Session
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.traffic import Traffic
from tunnel.protocol.verdicts import CONSUMED, DROPPED, KEEPALIVE, TO_TUN, Verdict
from tunnel.protocol.wrap.base import OP_SID_LEN, Opened
from tunnel.protocol.wrap.tls_crypt_v2 import EARLY_NEG_TLV

__all__ = ["AddressPool", "ClientConfig", "PeerEntry", "Server", "ServerSettings"]

Address = tuple[str, int]

_P_DATA_V1 = int(Opcode.P_DATA_V1)
_P_DATA_V2 = int(Opcode.P_DATA_V2)
_HARD_RESET_CLIENT_V2 = int(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2)
_HARD_RESET_CLIENT_V3 = int(Opcode.P_CONTROL_HARD_RESET_CLIENT_V3)
_PROOF_BLOCK = 65536  # the scratch of a cookie proof: any UDP datagram fits
_COOKIE_ECHO_OPCODES = frozenset(
    {int(Opcode.P_CONTROL_V1), int(Opcode.P_ACK_V1), int(Opcode.P_CONTROL_WKC_V1)}
)
_U32 = struct.Struct(">I")


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
    # Peer-ids handed out: first, first + step, ... (max_clients of them). A worker of a
    # multi-worker server (tunnel/app/worker.py) uses (index, workers), so that the UDP
    # steering program finds a data packet's worker as peer_id % workers.
    peer_ids: tuple[int, int] = (0, 1)
    # Told the networks a client is reached by (its addresses, its iroutes) once it has them
    # (True) and before they are given back (False): a multi-worker server steers the TUN
    # queues by them.
    on_routes: Callable[[Session, tuple[Network, ...], bool], None] | None = None
    # A multi-worker server's choice of the worker a new session lives on (worker.py):
    # asked with the client's session id, its address and the datagram as it arrived, once
    # that datagram proved the cookie, before anything is created. False: not here (another
    # worker was handed the datagram, or none can take it), and nothing is created.
    place_session: Callable[[bytes, Address, bytes], bool] | None = None
    # The server's timer fires on a grid of this many seconds (0: at each deadline), so the
    # keepalives, timeouts and retransmits of all sessions due within one step are handled in
    # one wake-up. With N idle clients the deadlines are N / ping per second apart; one
    # wake-up each cost more than the work it did. Whole seconds, as stock's timers (its
    # event loop's `now` is a time_t): a ping goes out 10-11 s after the last send and a
    # retransmit 2-3 s after the first as there; on a 0.2 s grid an idle server woke five
    # times a second however few clients it had (N = 100: 1.5x stock's idle CPU per client).
    timer_granularity: float = 1.0


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _routes_of(entry: PeerEntry) -> tuple[Network, ...]:
    routes: list[Network] = []
    if entry.vip is not None:
        routes.append(ipaddress.ip_network(entry.vip))
    if entry.vip6 is not None:
        routes.append(ipaddress.ip_network(entry.vip6))
    routes.extend(entry.iroutes)
    return tuple(routes)


class Server:
    """The sans-I/O server: datagrams in, datagrams out, events, one timer."""

    def __init__(
        self, settings: ServerSettings, now: float, cookie_key: bytes | None = None
    ) -> None:
        self.settings = settings
        self.cookies = CookieJar(cookie_key, hand_window=settings.session.hand_window)
        # The stateless reset answers are built and wrapped in this (one block, copied out).
        self._control_pool = BufferPool(settings.session.control_wrap.frame, 1)
        self.table = PeerTable(settings.max_clients, settings.pool, settings.pool6,
                               peer_ids=settings.peer_ids)
        # The table's maps, read per packet (the same objects for the server's lifetime).
        self._by_addr = self.table.by_addr
        self._by_id = self.table.by_id
        self._by_vip = self.table.by_vip
        self._by_vip6 = self.table.by_vip6
        self._iroutes = self.table.iroutes
        self._stateless_out: list[tuple[bytes, Address]] = []
        # A cookie proof as it arrived, for `place_session` (see _receive_stateless): made
        # here, not by the first packet from the network.
        self._proof_scratch = memoryview(bytearray(
            _PROOF_BLOCK if settings.place_session is not None else 0))
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
        self.drops = DropLog(self._events)
        self.refused = 0
        # Everything on the link and the device; per client: `Session.traffic`.
        self.traffic = Traffic()
        # One gc arena per connection per event-loop iteration (memory.py): the driver sets
        # `iteration.pool`, calls `end_iteration()` after each callback; the data paths mark
        # the sessions they touch (one dict store per packet).
        self.iteration = IterationArenas()
        self._touched = self.iteration.touched

    # -- queries (the app's view: status, management, metrics) ------------------------------

    def peer(self, peer_id: int | None) -> PeerEntry | None:
        """The client with this id (the `peer_id` of its events), None if it is gone."""
        return self.table.get(peer_id)

    def peer_at(self, addr: Address) -> PeerEntry | None:
        """The client at this link address."""
        return self._by_addr.get(addr)

    @property
    def sessions(self) -> list[Session]:
        return [entry.session for entry in self._by_addr.values()]

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    @property
    def dropped(self) -> int:
        return self.drops.total

    # -- input -----------------------------------------------------------------------------

    def receive(self, buf: Buffer, addr: Address, now: float) -> Verdict:
        """One datagram: TO_TUN (buf now holds an IP packet), CONSUMED or DROPPED.

        A data packet is handled here in one frame (found by peer-id, or by address for
        P_DATA_V1; decrypted; its inner source checked; a float only after all that): this
        runs once per packet, and every call on the way is latency on an idle tunnel."""
        data = buf.data
        size = len(data)
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += 1
        if not size:
            self.drops.drop(MALFORMED, addr, "empty datagram", now)
            return DROPPED
        opcode = data[0] >> 3
        if opcode == _P_DATA_V2:
            if size < 4:
                self.drops.drop(MALFORMED, addr, "data packet shorter than its header", now)
                return DROPPED
            peer_id: int = _U32.unpack_from(data)[0] & 0xFFFFFF  # op|key_id, peer-id
            by_id = self._by_id
            entry = by_id[peer_id] if peer_id < len(by_id) else None
        elif opcode == _P_DATA_V1:
            entry = self._by_addr.get(addr)
        else:
            return self._receive_control(buf, addr, now, size)
        if entry is None:
            self.drops.drop(NO_SESSION, addr, "data packet for no session", now)
            return DROPPED
        session = entry.session
        return self._decrypted(entry, session, buf, addr, size, session.decrypt(buf, now), now)

    def _decrypted(self, entry: PeerEntry, session: Session, buf: Buffer, addr: Address,
                   size: int, verdict: Verdict, now: float) -> Verdict:
        """`receive` after the session opened (or refused) a data datagram of `size` bytes
        from `addr`: the inner source, a float, the counters, client-to-client."""
        here = session.remote_addr == addr
        if verdict == DROPPED:
            cause = session.last_drop
            if cause == AUTH_FAILED:
                session.traffic.auth_drops += 1
            elif cause == REPLAY:
                session.traffic.replay_drops += 1
            self.drops.drop(cause, addr, DATA_DROP_TEXT[cause], now)
        elif verdict == TO_TUN and (
            # The inner source must be the client's (multi.c: 'bad source address'); IPv4
            # inline, the rest in _source_allowed.
            _U32.unpack_from(payload, 12)[0] != entry.vip_int
            if len(payload := buf.data) >= 20 and payload[0] >> 4 == 4
            else not self._source_allowed(entry, payload)
        ):
            verdict = DROPPED
            if not _link_local_source(payload):
                self.drops.drop(BAD_SOURCE, addr, "packet with a source address not the "
                                "client's", now)
        elif not here:
            self.table.move(entry, addr)  # a float: only after the packet authenticated
            here = True
        if here:  # counted for the client only when it came from where the client is
            session_traffic = session.traffic
            session_traffic.link_rx += size
            session_traffic.link_rx_packets += 1
        if verdict == DROPPED:
            return verdict
        self._touched[session.memory] = None  # authenticated: this iteration touched it
        if verdict == TO_TUN:
            if self.settings.client_to_client:
                verdict = self._client_to_client(entry, buf, now)
                if verdict != TO_TUN:
                    return verdict
            self.traffic.tun_tx += len(buf)
        elif verdict == CONSUMED:
            self.touch(session)  # a ping or OCC: an OCC reply may be queued
        return verdict

    # -- what the lone-packet lane (tunnel/io/lane.py) hands back: `receive`'s branches ----

    def lane_delivered(self, entry: PeerEntry, size: int, plain: int, now: float) -> None:
        """The lane opened a P_DATA_V2 datagram of `size` bytes from `entry`'s client, at its
        address, with its current key, checked its IPv4 source and wrote the `plain` bytes
        to the TUN: `receive`'s counters for that (no float, no client-to-client)."""
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += 1
        traffic.tun_tx += plain
        session = entry.session
        session.last_rx = now
        session_traffic = session.traffic
        session_traffic.link_rx += size
        session_traffic.link_rx_packets += 1
        # Nothing came from its arena: the iteration's end would only count its turn, so it is
        # counted here and the lane's callback ends without that walk (tunnel/io/lane.py).
        session.memory.iterations += 1

    def lane_opened(self, entry: PeerEntry, key: DataCipherKey, buf: Buffer, addr: Address,
                    size: int, now: float) -> Verdict:
        """The lane opened a datagram of `size` bytes from `addr` for `entry` with `key` and
        left the payload in `buf`: `receive` from the open on."""
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += 1
        session = entry.session
        return self._decrypted(entry, session, buf, addr, size, session.opened(buf, key, now),
                               now)

    def lane_refused(self, entry: PeerEntry, key: DataCipherKey, buf: Buffer, addr: Address,
                     size: int, now: float) -> Verdict:
        """`key` refused the lane's datagram (it counted why): `receive`'s DROPPED branch."""
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += 1
        session = entry.session
        return self._decrypted(entry, session, buf, addr, size, session._data_dropped(key),
                               now)

    def lane_sent(self, entry: PeerEntry, size: int, sealed: int) -> None:
        """The lane sealed a TUN packet of `size` bytes for `entry` and sent it: `encrypt`'s
        counters."""
        traffic = self.traffic
        traffic.tun_rx += size
        traffic.link_tx += sealed
        traffic.link_tx_packets += 1
        session = entry.session
        traffic = session.traffic
        traffic.link_tx += sealed
        traffic.link_tx_packets += 1
        session.memory.iterations += 1  # (as in `lane_delivered`)

    def lane_route(self, data: memoryview) -> PeerEntry | None:
        """The client a TUN packet is for (the lane's routing: `encrypt`'s)."""
        return self._route(data)

    def _receive_control(self, buf: Buffer, addr: Address, now: float, size: int) -> Verdict:
        """A control-channel datagram: to its session, or the stateless cookie exchange."""
        entry = self._by_addr.get(addr)
        if entry is not None and not self._from_new_client(entry.session, buf.data):
            # A handshake's packets are where a session's keys change: the I/O lane's plan,
            # which holds the current key, is dropped here so that it does not keep a replaced
            # key alive until the next packet to this client. (Its use never depends on
            # this: the lane checks every input of the plan per packet, tunnel/io/lane.py.)
            entry.lane_plan = entry.lane_open_plan = None
            session = entry.session
            session.traffic.link_rx += size
            session.traffic.link_rx_packets += 1
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
        entry = self._by_addr.get(addr)  # the session this packet created, or the old one
        if entry is not None:
            entry.session.traffic.link_rx += size
            entry.session.traffic.link_rx_packets += 1
        return CONSUMED

    @staticmethod
    def _from_new_client(session: Session, data: memoryview) -> bool:
        if len(data) < 9 or session.remote_sid is None:
            return False
        opcode = data[0] >> 3
        if opcode in (_HARD_RESET_CLIENT_V2, _HARD_RESET_CLIENT_V3):
            return True
        return opcode in _COOKIE_ECHO_OPCODES and data[1:9] != session.remote_sid

    def _ifconfig_second(self, vip: ipaddress.IPv4Address) -> str:
        topology = self.settings.topology
        if topology == "net30":
            return str(vip - 1)
        if topology == "p2p" and self.settings.server_local is not None:
            return str(self.settings.server_local)
        return self.settings.netmask

    def _client_to_client(self, entry: PeerEntry, buf: Buffer, now: float) -> Verdict:
        """client-to-client: a packet for another client goes straight to it, re-sealed in
        place for that client (multi.c: multi_process_incoming_link), never to the TUN."""
        other = self._route(buf.data)
        if other is None or other is entry:
            return TO_TUN
        session = other.session
        iteration = self.iteration
        out = iteration.take(session.memory)  # the other connection's, for this iteration
        if out is None:
            if iteration.pool is None and session.encrypt(buf, now):  # no pool: copy it out
                self._stateless_out.append((bytes(buf.data), session.remote_addr))
                session.traffic.link_tx += len(buf)
                session.traffic.link_tx_packets += 1
            return CONSUMED  # (or the pool is exhausted: dropped, counted)
        out.append(buf.data)
        if session.encrypt(out, now):
            iteration.queue(out, session.remote_addr, session.memory)
            for traffic in (session.traffic, self.traffic):  # not via datagrams_to_send
                traffic.link_tx += len(out)
                traffic.link_tx_packets += 1
        return CONSUMED  # the caller's control step sends the queued datagram

    @staticmethod
    def _source_allowed(entry: PeerEntry, data: memoryview) -> bool:
        """A client may only send from the address we gave it (multi.c: 'bad source address')."""
        version = data[0] >> 4 if data else 0
        if version == 4 and len(data) >= 20:
            source: int = _U32.unpack_from(data, 12)[0]
            return source == entry.vip_int  # -1 before it has one
        if version == 6 and len(data) >= 40:
            return entry.vip6 is not None and data[8:24] == entry.vip6_packed
        return False

    def _receive_stateless(self, buf: Buffer, addr: Address, now: float) -> None:
        # The wrap's tag check (tls-auth/tls-crypt/-v2) comes first and keeps no state: a
        # packet with the wrong key costs the check and nothing else (ssl_pkt.c:
        # tls_pre_decrypt_lite()). Replay is checked by the session it may create. Shorter
        # than op|sid is malformed before any wrap looks at it, as there.
        if len(buf) < OP_SID_LEN:
            self._drop(addr, f"too short control packet (length {len(buf)})", now, MALFORMED)
            return
        # A multi-worker server may hand the proof to another worker: as it arrived, before
        # the wrap opens it in place (only for the opcodes that can prove a cookie). Copied
        # into the one scratch block, not a new object: input nobody authenticated yet costs
        # a copy and no allocation; bytes are made of it only for a session to be placed.
        raw = 0
        if self.settings.place_session is not None and buf.data[0] >> 3 in _COOKIE_ECHO_OPCODES:
            raw = len(buf)
            scratch = self._proof_scratch
            if len(scratch) < raw:  # never for UDP; set after start, or a longer frame
                self._proof_scratch = scratch = memoryview(bytearray(max(raw, _PROOF_BLOCK)))
            scratch[:raw] = buf.data
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
            self._maybe_create_session(packet, addr, now, opened, raw)
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
        self._stateless_out.append((self._stateless_reset(server_sid, packet, now, opened), addr))

    def _stateless_reset(
        self, server_sid: bytes, packet: ControlPacket, now: float, opened: Opened
    ) -> bytes:
        """Our HARD_RESET_SERVER_V2 (pid 0, ACKing the client's pid 0), built in a pooled
        control buffer and wrapped there with packet-id 1, as stock's reset_packet_id_send()
        + write_control_auth()."""
        pool = self._control_pool
        buf = pool.acquire()
        try:
            if opened.early_negotiation:
                buf.append(EARLY_NEG_TLV)
            write_control(buf, Opcode.P_CONTROL_HARD_RESET_SERVER_V2, 0, server_sid, (0,),
                          packet.session_id, 0)
            wrap = opened.wrap
            if wrap.has_packet_id:
                offset = self.settings.session.clock_offset
                wrap.seal(buf, 1, int(now + offset) & 0xFFFFFFFF)
            return bytes(buf.data)
        finally:
            pool.release(buf)

    def _maybe_create_session(
        self, packet: ControlPacket, addr: Address, now: float, opened: Opened, raw: int
    ) -> None:
        """`raw`: the length of the datagram as it arrived, in `_proof_scratch` (with
        `place_session`)."""
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
        old = self._by_addr.get(addr)
        if old is not None:
            # The client at this address restarted (it proved it receives here): the new
            # session replaces the old one at once instead of after its ping-restart.
            old.session.close(now, "client restarted from the same address")
            self._collect(old.session)
        place = self.settings.place_session
        if place is not None and not place(packet.session_id, addr,
                                           bytes(self._proof_scratch[:raw])):
            return
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
        entry = self.table.add(addr, lambda peer_id: Session(
            s, remote_addr=addr, now=now, local_sid=echoed, peer_id=peer_id,
            wrap_channel=channel, push_items=self._push_items_for,
        ))
        assert entry is not None  # _make_room made sure an id is free
        session = entry.session
        self._half_open[session] = None
        session.accept(packet, now)
        self._collect(session)

    def _make_room(self, addr: Address, now: float) -> bool:
        """Room for one more session: at the half-open bound (or out of peer-ids) the oldest
        handshake still running is ended; with every slot an established client, refused."""
        if len(self._half_open) < self._max_half_open and self.table.has_room:
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
        return self.table.has_room

    def connection_lost(self, addr: Address, now: float, reason: str) -> None:
        """A connection-oriented transport lost the link to `addr`: its session ends (stock:
        a TCP client instance is torn down with its connection)."""
        entry = self._by_addr.get(addr)
        if entry is not None:
            entry.session.close(now, reason)
            self._collect(entry.session)

    def _drop(self, addr: Address, reason: str, now: float, cause: str = MALFORMED) -> None:
        self.drops.drop(cause, addr, reason, now)

    # -- data towards clients (hot) ----------------------------------------------------------

    def _route(self, data: memoryview) -> PeerEntry | None:
        """The client an IP packet from the TUN device is for (by destination address)."""
        if len(data) < 20:
            return None
        version = data[0] >> 4
        if version == 4:
            destination = _U32.unpack_from(data, 16)[0]
            entry = self._by_vip.get(destination)
            if entry is None and self._iroutes:
                return self._iroutes.lookup(destination)
            return entry
        if version == 6 and len(data) >= 40:
            return self._by_vip6.get(bytes(data[24:40]))
        return None

    def route(self, buf: Buffer) -> Session | None:
        """The session an IP packet from the TUN device is for (by destination address)."""
        entry = self._route(buf.data)
        return entry.session if entry is not None else None

    def encrypt(self, buf: Buffer, now: float) -> Address | None:
        """Seal a TUN packet for its client in place; the address to send it to, or None."""
        data = buf.data
        size = len(data)
        if size >= 20 and data[0] >> 4 == 4:  # _route() inlined for IPv4: a call less
            destination = _U32.unpack_from(data, 16)[0]
            entry = self._by_vip.get(destination)
            if entry is None and self._iroutes:
                entry = self._iroutes.lookup(destination)
        else:
            entry = self._route(data)
        if entry is None:
            return None
        session = entry.session
        if not session.encrypt(buf, now):
            return None
        sealed = len(buf)
        traffic = self.traffic
        traffic.tun_rx += size
        traffic.link_tx += sealed
        traffic.link_tx_packets += 1
        traffic = session.traffic
        traffic.link_tx += sealed
        traffic.link_tx_packets += 1
        self._touched[session.memory] = None
        return session.remote_addr

    def open_rows(self, rows: ReceivedRows, addr: Address, now: float) -> list[int] | None:
        """`receive` for a GRO run of P_DATA_V2 datagrams of one size from one client at once
        (tunnel/io/gro_rows.py): per row the verdict `receive` gives, with its counters and
        drop reports, in its order (authentication, then the replay window, then the inner
        source). None, with nothing done, when the run is not for this path: another opcode,
        rows with different peer-ids or key_ids, no such client, another address than the
        client's (a float is decided per packet), client-to-client (routed per packet), or a
        session that cannot (`Session.open_rows`); the caller then takes the datagrams one by
        one through `receive`."""
        if rows.first_byte >> 3 != _P_DATA_V2 or self.settings.client_to_client:
            return None
        header = rows.header()
        if header is None:
            return None
        peer_id = header & 0xFFFFFF
        by_id = self._by_id
        entry = by_id[peer_id] if peer_id < len(by_id) else None
        if entry is None:
            return None
        session = entry.session
        if session.remote_addr != addr:
            return None
        verdicts = session.open_rows(rows, now)
        if verdicts is None:
            return None
        count = rows.count
        size = count * rows.segment
        traffic = self.traffic
        traffic.link_rx += size
        traffic.link_rx_packets += count
        session_traffic = session.traffic
        session_traffic.link_rx += size
        session_traffic.link_rx_packets += count
        drops = self.drops
        if DROPPED in verdicts:
            for cause in session.row_drops:
                if cause == AUTH_FAILED:
                    session_traffic.auth_drops += 1
                elif cause == REPLAY:
                    session_traffic.replay_drops += 1
                drops.drop(cause, addr, DATA_DROP_TEXT[cause], now)
        for index in rows.foreign_sources(entry.vip_int):
            if verdicts[index] == TO_TUN and not self._source_allowed(
                    entry, payload := rows.plain(index)):
                verdicts[index] = DROPPED
                if not _link_local_source(payload):
                    drops.drop(BAD_SOURCE, addr, "packet with a source address not the "
                               "client's", now)
        delivered = verdicts.count(TO_TUN)
        if delivered or KEEPALIVE in verdicts or CONSUMED in verdicts:
            self._touched[session.memory] = None  # authenticated: this iteration touched it
        traffic.tun_tx += delivered * rows.plain_size
        if CONSUMED in verdicts:
            self.touch(session)  # a ping or OCC: an OCC reply may be queued
        return verdicts

    def seal_segments(self, rows: SegmentRows, now: float) -> Address | None:
        """`encrypt` for all segments of one TSO super-packet (one flow: routed once); the
        address to send the run to, or None with nothing done (the caller takes the segments
        one by one through `encrypt`, which counts what it must)."""
        destination = rows.destination
        entry = self._by_vip.get(destination)
        if entry is None and self._iroutes:
            entry = self._iroutes.lookup(destination)
        if entry is None:
            return None
        session = entry.session
        if not session.seal_segments(rows, now):
            return None
        count = rows.count
        plain = rows.plain_bytes
        sealed = plain + count * rows.overhead
        traffic = self.traffic
        traffic.tun_rx += plain
        traffic.link_tx += sealed
        traffic.link_tx_packets += count
        traffic = session.traffic
        traffic.link_tx += sealed
        traffic.link_tx_packets += count
        self._touched[session.memory] = None
        return session.remote_addr

    def end_iteration(self) -> None:
        """The event-loop iteration is over: free the arenas of the sessions it touched."""
        self.iteration.end()

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
        retime = self._to_retime
        for session in touched:
            datagrams = session.datagrams_to_send(now)
            if datagrams:
                addr = session.remote_addr
                size = 0
                for datagram in datagrams:
                    out.append((datagram, addr))
                    size += len(datagram)
                traffic = session.traffic
                traffic.link_tx += size
                traffic.link_tx_packets += len(datagrams)
            retime[session] = None  # sending arms its retransmit timers
        if out:
            traffic = self.traffic
            for datagram, _addr in out:
                traffic.link_tx += len(datagram)
            traffic.link_tx_packets += len(out)
        return out

    def get_timer(self) -> float | None:
        retime, self._to_retime = self._to_retime, {}
        deadlines = self._deadlines
        for session in retime:
            deadlines.schedule(session, session.get_timer())
        earliest = deadlines.earliest()
        step = self.settings.timer_granularity
        if earliest is None or step <= 0:
            return earliest
        return max(earliest, math.ceil(earliest / step) * step)

    def handle_timer(self, now: float) -> None:
        for session in self._deadlines.pop_due(now):
            session.handle_timer(now)
            self._collect(session)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> None:
        for entry in self.table:
            entry.session.close(now, "server shutting down")
            self._collect(entry.session)

    def authorize(self, session: Session, auth_id: int, approve: bool, reason: str,
                  client_reason: str | None, now: float,
                  config: ClientConfig | None = None) -> bool:
        """The verdict on a deferred authentication (management client-auth/client-deny);
        `config`: the client-auth body, applied after any client-config-dir file."""
        entry = self.table.of(session)
        if approve and config is not None and auth_id in session.auth_pending and entry:
            entry.auth_config = config
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
            if isinstance(event, DataChannelReady):
                self._half_open.pop(session, None)  # established: no longer half-open
                self._events.append(event)
            elif isinstance(event, SessionClosed):
                if session.send_key is None or session.auth_failed:
                    self.refused += 1
                    self._events.append(ClientRefused(session.remote_addr, event.reason,
                                                      session.peer_id))
                self._events.append(event)
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
        entry = self.table.of(session)
        if entry is not None:
            vip = entry.vip
            if vip is not None and self.settings.on_client_gone is not None:
                self.settings.on_client_gone(session, vip)
            if vip is not None and self.settings.on_routes is not None:
                self.settings.on_routes(session, _routes_of(entry), False)
            self.table.remove(entry)
        # Flush what the session still had to say (AUTH_FAILED, RESTART) before forgetting it.
        last = max(session.last_rx, session.last_tx)
        datagrams = session.datagrams_to_send(last)
        for datagram in datagrams:
            self._stateless_out.append((datagram, session.remote_addr))
            session.traffic.link_tx += len(datagram)
        session.traffic.link_tx_packets += len(datagrams)
        session.release()

    def _push_items_for(self, session: Session) -> list[str]:
        """The push list of one client; its address is assigned here, after authentication,
        when its common name is known (multi.c: multi_client_connect_late_setup)."""
        entry = self.table.of(session)
        if entry is None:
            raise HandshakeError("session without a peer-id")
        client = ClientConfig()
        if self.settings.client_config is not None:
            found = self.settings.client_config(session)
            if found is None:
                raise HandshakeError("client-config-dir: no usable config for this client")
            client = found
        if entry.auth_config is not None:
            client = client.then(entry.auth_config)
        if client.disable:
            raise HandshakeError("client-config-dir: client is disabled ('disable')")
        vip = entry.vip
        if vip is None:
            vip = self._assign_address(entry, client)
        items = [] if client.push_reset else list(self.settings.push)
        items.extend(client.push)
        if entry.vip6 is not None:
            # Stock order: ifconfig-ipv6, then ifconfig (push.c: prepare_push_reply).
            items.append(f"ifconfig-ipv6 {entry.vip6}/{self.settings.prefix6} "
                         f"{self.settings.gateway6}")
        items.append(f"ifconfig {vip} {self._ifconfig_second(vip)}")
        if self.settings.on_client_connected is not None:
            self.settings.on_client_connected(session, vip)
        return items

    def _assign_address(self, entry: PeerEntry, client: ClientConfig) -> ipaddress.IPv4Address:
        session = entry.session
        cn = session.peer_common_name
        if cn is not None and not self.settings.duplicate_cn:
            other = self.table.named(cn)
            if other is not None and other is not entry:
                # multi.c: without duplicate-cn the newer connection wins.
                other.session.close(session.last_rx, f"replaced by a new connection with CN {cn}")
                self._collect(other.session)
            self.table.set_name(entry, cn)
        vip = self.table.assign(entry, client.ifconfig_push, client.iroutes)
        if self.settings.on_routes is not None:
            self.settings.on_routes(entry.session, _routes_of(entry), True)
        return vip


def _link_local_source(data: memoryview) -> bool:
    """An IPv6 packet from fe80::/10: a client's kernel sends router solicitations and MLD
    reports from its link-local address when its TUN comes up; stock drops them without a
    word (multi.c: "IPv6 link-local address (fe80::xxx)? do nothing"), so they are not
    counted as bad source addresses either."""
    return len(data) >= 40 and data[0] >> 4 == 6 and data[8] == 0xFE and data[9] & 0xC0 == 0x80
