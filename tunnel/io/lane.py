"""The lone-packet lane: an idle tunnel's packet in one or two native calls per hop.

An interactive packet (ping, SSH, an RPC) arrives alone, and every wakeup on an idle tunnel
runs cold: each distinct line it runs costs as if it were the first. The Python hop
(datapath.py -> endpoint -> Session -> DataKey -> Buffer -> GsoSender) was ~30 calls per
packet, most of the round trip's gap to the stock binary (docs/PERFORMANCE.md). The lane
(`tunnel._aead.Lane`, tunnel/_lane.c) does the ordinary case natively, on the key's own
libcrypto contexts and packet-id counter:

* device side: read the packet, nothing behind it, not a SYN under mssfix -> sealed where it
  lies in the lane's pool buffer and sent to the peer;
* link side: one datagram, nothing behind it, from the peer's address, P_DATA of the current
  key -> authenticated, the key's replay window, written to the TUN.

The client (`ClientLane`) has one peer: the lane holds its session's current key, mirrored on
every call (`_sync`: key, peer-id, compression, mssfix, server address, so a rekey, a push or
a reconnect is seen before the next packet), and a hop is one call. The server
(`ServerLane`) has many: the lane finds the client itself in the server's own maps (the
destination address in `by_vip`, the peer-id in `by_id`) and seals or opens with what this
module decided the last time for that client (the entry's `lane_plan` / `lane_open_plan`),
but only while every input of that decision is still the same object on the live session;
otherwise the lane reads and holds, this module finds the client, decides (and plans again),
and a second call seals or opens. So the decision is made once, here, and the lane reuses it
only unchanged.

Everything else comes back as what was read and where, and goes on through the Python path
(`outbound_batch` / `inbound_batch` with the packet already read, or the session's `opened`
for an opened payload it does not deliver): the same checks in the same order, so there is no
second implementation of a decision. The counters the Python path keeps (driver stats,
traffic, key, device, GSO and coalescer counts) are kept here the same way.

Over a TUN with TSO reads (the default, tunnel/app/device.py) the lane reads into the
device's own read area (`TunDevice.read_area`): a TCP super-packet is handed to the TSO path
where it lies (`TAKE_SUPER`, `TunDevice.lane_super`), a plain packet comes to the lane's
buffer with its partial checksum completed natively (tunnel/_csum.c), as the Python reader
would complete it; while the device holds frames already read ahead, the batch path serves
them first.

Used where it applies: UDP, a real TUN, the libcrypto AEAD, no compression framing;
`TUNNEL_LANE=0` turns it off (A/B benchmarks).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Final

from core import Buffer, BufferPool, PoolExhausted, RunPool
from tunnel.io.batch_kinds import CONTROL, REFUSED
from tunnel.io.datapath import DeviceOutput, UdpLink
from tunnel.io.gso import GsoSender
from tunnel.io.tun import TunDevice
from tunnel.protocol.aead import BACKEND, NATIVE_AEAD
from tunnel.protocol.client import Client
from tunnel.protocol.constants import Opcode
from tunnel.protocol.datachannel import DATA_V1_OVERHEAD, DATA_V2_OVERHEAD, DataKey
from tunnel.protocol.server import Server
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN

if TYPE_CHECKING:
    from collections.abc import Callable

    from tunnel._aead import Aead, Lane
    from tunnel.io.driver_stats import DriverStats
    from tunnel.protocol.memory import ConnectionMemory
    from tunnel.protocol.peertable import PeerEntry
    from tunnel.protocol.session import Session

# The lane's result: a kind in the low 4 bits, bit 4 set for a P_DATA_V1 datagram, the size
# above (tunnel/_lane.c).
EMPTY: Final = 0
SENT: Final = 1
SEND_FAILED: Final = 2
TAKE_LONE: Final = 3
TAKE_MORE: Final = 4
READ_DROPPED: Final = 5
READ_ERROR: Final = 6
DELIVERED: Final = 7
TUN_DROPPED: Final = 8
LINK_TAKE: Final = 9
MALFORMED: Final = 10
AUTH_FAILED: Final = 11
REPLAYED: Final = 12
OPENED_TAKE: Final = 13
LINK_ERROR: Final = 14
TAKE_SUPER: Final = 15
_KIND: Final = 15
_V1: Final = 16
_SIZE_SHIFT: Final = 5

Pre = tuple[int, int, tuple[str, int], bool]
"""A datagram the lane read and left for `inbound_batch`: (size, segment, addr, lone)."""

HANDLED: Final = -1
"""`device`/`link`: the lane did the whole wakeup's work."""

_P_DATA_V2: Final = int(Opcode.P_DATA_V2)


def lane_wanted() -> bool:
    """Whether this process may use lanes at all (`TUNNEL_LANE=0`: never)."""
    return (NATIVE_AEAD is not None and BACKEND == "libcrypto"
            and os.environ.get("TUNNEL_LANE", "1") != "0")


def _overhead(result: int) -> int:
    """The header and tag bytes of the datagram a link result is about (V1 or V2)."""
    return DATA_V1_OVERHEAD if result & _V1 else DATA_V2_OVERHEAD


class _LaneGlue:
    """What the client's and the server's glue share: the lane, its buffer, and the counters
    the Python path keeps for what the lane did (the driver's stats, the device's, the GSO
    sender's, the device output's)."""

    __slots__ = ("_after_input", "_block", "_device", "_device_batch", "_drain_events", "_end",
                 "_fault", "_gso", "_headroom", "_lane", "_native", "_output", "_socket_batch",
                 "_stats", "_time", "_touched", "buf", "device_busy", "link_busy",
                 "lone", "pre")

    def __init__(self, lane: Lane, device: TunDevice, buf: Buffer, block: memoryview,
                 gso: GsoSender, output: DeviceOutput, stats: DriverStats,
                 native: type[Aead]) -> None:
        self._lane = lane
        self._native = native  # the libcrypto context class: the lane works on no other
        self._device = device
        self._gso = gso
        self._output = output
        self._stats = stats
        self.buf = buf  # the lane's pool buffer, held for its life; the batch's when it falls back
        self._block = block  # all of it: where the lane reads to
        self._headroom = buf.offset
        self.lone = False
        # What `link` read and hands to `inbound_batch`: (size, segment, addr, lone).
        self.pre: Pre | None = None
        # Whether the driver's last batch of each side moved more than one packet (it sets
        # them): under load a wakeup goes straight to the batch path, where the lane's first
        # read would only be handed over; back to the lane after the first quiet one. The
        # device side also while the device holds frames it read ahead (TSO): they go before
        # anything the lane would read (the driver asks after each batch, the only reader
        # that leaves frames held: a lane read that meets a super-packet goes on to it).
        self.device_busy = self.link_busy = False

    def bind(self, *, time: Callable[[], float], device_batch: Callable[[int], None],
             socket_batch: Callable[[Pre | None], None],
             fault: Callable[[str, Exception], None], end: Callable[[], None],
             after_input: Callable[[float], None], drain_events: Callable[[], None],
             touched: dict[ConnectionMemory, None]) -> None:
        """The driver's parts the readiness callbacks go on to (its clock, batch paths, fault
        log, iteration end, control work) and the endpoint's iteration's touched
        connections: `device_readable` / `link_readable` are then its readiness callbacks."""
        self._time = time
        self._device_batch = device_batch
        self._socket_batch = socket_batch
        self._fault = fault
        self._end = end
        self._after_input = after_input
        self._drain_events = drain_events
        self._touched = touched  # (the same dict for the endpoint's life)

    def _end_handled(self) -> None:
        """A callback the lane handled took something from an arena: free it (the driver's)."""
        try:
            self._end()
        except Exception as exc:
            self._fault("freeing the connections' arenas", exc)

    def _device_done(self, first: int) -> None:
        """The device callback after the lane: over (HANDLED), or the batch path from `first`
        (0: from scratch; a size: the packet the lane read and left in `buf`)."""
        if first == HANDLED:
            if self._touched:
                self._end_handled()
            return
        self._device_batch(first)

    def _link_done(self, handled: int, now: float) -> None:
        """The socket callback after the lane: the control work its datagram asks for, or the
        batch path (from `pre` when the lane read a datagram it did not handle)."""
        if handled <= HANDLED:
            kinds = handled_kinds(handled)
            try:
                if kinds & CONTROL:
                    self._after_input(now)
                elif kinds & REFUSED:
                    self._drain_events()
            except Exception as exc:
                self._fault("the handling of a datagram from the link", exc)
            if self._touched:
                self._end_handled()
            return
        self._socket_batch(self.pre)

    def _sent(self, kind: int) -> None:
        """A device packet sealed and sent (SENT) or refused by the socket (SEND_FAILED)."""
        self._device.rx_packets += 1
        stats = self._stats
        stats.tun_rx += 1
        gso = self._gso
        gso.runs += 1
        if kind == SENT:
            gso.sent += 1
            stats.udp_tx += 1
        else:
            gso.dropped += 1
            stats.udp_tx_dropped += 1

    def _device_rest(self, result: int) -> int:
        """`device`'s answer for what the lane did not send: HANDLED, 0 or a packet's size."""
        kind = result & _KIND
        if kind == EMPTY:
            return HANDLED
        if kind in (TAKE_LONE, TAKE_MORE):
            self._device.rx_packets += 1
            self.lone = kind == TAKE_LONE
            self.buf.reset(self._headroom)
            return result >> _SIZE_SHIFT
        if kind == TAKE_SUPER:  # where it lies in the device's read area: the TSO path's
            self._device.lane_super(result >> _SIZE_SHIFT)
        elif kind == READ_DROPPED:
            self._device.rx_dropped += 1
        return 0  # and READ_DROPPED, READ_ERROR: the batch path reads on (and meets the error)

    def _written(self, kind: int) -> None:
        """An opened payload written to the device (DELIVERED) or refused by it."""
        stats = self._stats
        stats.udp_rx += 1
        output = self._output
        counts = output.counts
        counts.packets += 1
        if output.coalescer is not None:
            output.coalescer.writes += 1
        if kind == DELIVERED:
            self._device.tx_packets += 1
            stats.tun_tx += 1
        else:
            counts.dropped += 1
            self._device.tx_dropped += 1
            stats.tun_tx_dropped += 1

    def _payload(self, result: int) -> Buffer:
        """The lane's buffer over the payload of the datagram it opened (OPENED_TAKE)."""
        buf = self.buf
        ct_at = _overhead(result)
        buf.reset(self._headroom + ct_at)
        buf.inc_len((result >> _SIZE_SHIFT) - ct_at)
        return buf

    def _deliver(self, buf: Buffer, verdict: int) -> int:
        """The session's verdict on a payload the lane opened: written when TO_TUN; the
        batch's CONTROL/REFUSED bits below HANDLED."""
        if verdict == TO_TUN:
            counts = self._output.counts
            dropped = counts.dropped
            self._output.write_alone(buf)
            if counts.dropped != dropped:
                self._stats.tun_tx_dropped += 1
            else:
                self._stats.tun_tx += 1
        buf.reset(self._headroom)
        if verdict == CONSUMED:
            return HANDLED - CONTROL
        if verdict == DROPPED:
            return HANDLED - REFUSED
        return HANDLED

    def _link_rest(self, result: int) -> int:
        """`link`'s answer for what the lane read and did not handle: 0 (with `pre` set when
        a datagram is waiting for `inbound_batch`) or HANDLED."""
        kind = result & _KIND
        if kind == LINK_TAKE:
            lane = self._lane
            addr = lane.addr
            if addr is None:  # not an address family we speak: the Python path reads on
                return 0
            self.pre = (lane.size, lane.segment, addr, lane.lone)
            self.buf.reset(self._headroom)  # the read is there; the batch arms from here
            return 0
        if kind == EMPTY:
            return HANDLED
        if kind == MALFORMED:
            self._stats.malformed += 1
        return 0  # MALFORMED, LINK_ERROR: the batch path reads on


class ClientLane(_LaneGlue):
    """A `Lane` for a `Client` endpoint: one peer, so the lane holds the session's keys."""

    __slots__ = ("_client", "_comp", "_key", "_mssfix", "_peer_id", "_session", "_usable")

    def __init__(self, lane: Lane, client: Client, device: TunDevice, buf: Buffer,
                 block: memoryview, gso: GsoSender, output: DeviceOutput, stats: DriverStats,
                 native: type[Aead]) -> None:
        super().__init__(lane, device, buf, block, gso, output, stats, native)
        self._client = client
        self._session: Session | None = None
        self._key: object = None  # the session's current key, mirrored
        self._usable: DataKey | None = None  # the same, where the lane can use it
        self._peer_id: int | None = None
        self._comp: object = None
        self._mssfix: object = None

    def _sync(self) -> DataKey | None:
        """Mirror the session: its current key (the one the lane uses, or None when the lane
        cannot use it), peer-id, compression, mssfix and the server's address."""
        session = self._client.session
        current = session.ring.current
        if (session is self._session and current is self._key
                and session.tx_peer_id == self._peer_id and session.comp is self._comp
                and session.mssfix == self._mssfix):
            return self._usable
        # (A push can set the peer-id, compression framing or mssfix after the key exists.)
        self._comp = session.comp
        self._mssfix = session.mssfix
        lane = self._lane
        if session is not self._session:
            lane.set_peer(*session.remote_addr[:2])
        self._session = session
        self._key = current
        self._peer_id = peer_id = session.tx_peer_id
        native = self._native
        if not (isinstance(current, DataKey) and session.comp is None
                and isinstance(sealer := current.sealer, native)
                and isinstance(opener := current.opener, native)):
            lane.set_send(None)
            lane.set_open(None)
            self._usable = None
            return None
        mssfix = bool(session.mssfix)
        if peer_id is None:
            lane.set_send(current, sealer, current._v1_op, False, mssfix)
        else:
            lane.set_send(current, sealer, current._v2_word | peer_id, True, mssfix)
        lane.set_open(current.key_id, opener, current.replay.accept)
        self._usable = current
        return current

    def device_readable(self) -> None:
        """The device's readiness callback: the wakeup's first packet sealed and sent by the
        lane, or the batch path (from the packet the lane read, `lone` saying if alone).
        A handled hop is counted here (and in `_sent`) and ends here: on an idle tunnel each
        frame a hop runs costs as if it were the first (docs/PERFORMANCE.md), so there is no
        driver frame around it and no iteration's end when nothing was taken from an arena."""
        if self.device_busy:
            self._device_batch(0)
            return
        try:
            key = self._sync()
            result = self._lane.device()
            kind = result & _KIND
            if kind in (SENT, SEND_FAILED):
                assert key is not None  # the lane seals only with a key set
                size = result >> _SIZE_SHIFT
                key.sealed += 1
                traffic = self._client.traffic
                traffic.tun_rx += size
                traffic.link_tx += size + (DATA_V2_OVERHEAD if self._peer_id is not None
                                           else DATA_V1_OVERHEAD)
                traffic.link_tx_packets += 1
                self._session.last_tx = self._time()  # type: ignore[union-attr]
                self._sent(kind)
                if not self._touched:
                    return
                first = HANDLED
            else:
                first = self._device_rest(result)
        except Exception as exc:  # a bug: this packet is lost, nothing else
            self._fault("the handling of a packet from the device", exc)
            first = HANDLED
        self._device_done(first)

    def link_readable(self) -> None:
        """The socket's readiness callback: the wakeup's first datagram opened and written by
        the lane, or the batch path (from the datagram the lane read, `pre`)."""
        if self.link_busy:
            self._socket_batch(None)
            return
        now = self._time()
        try:
            key = self._sync()
            result = self._lane.link(now)
            kind = result & _KIND
            self.pre = None
            if kind in (DELIVERED, TUN_DROPPED):
                assert key is not None  # the lane opens only with a key set
                size = result >> _SIZE_SHIFT
                key.opened += 1
                traffic = self._client.traffic
                traffic.link_rx += size
                traffic.link_rx_packets += 1
                traffic.tun_tx += size - _overhead(result)
                self._session.last_rx = now  # type: ignore[union-attr]
                self._written(kind)
                if not self._touched:
                    return
                handled = HANDLED
            else:
                handled = self._link_other(key, result, kind, now)
        except Exception as exc:  # a bug: this datagram is lost, nothing else
            self._fault("the handling of a datagram from the link", exc)
            handled = HANDLED
        self._link_done(handled, now)

    def _link_other(self, key: DataKey | None, result: int, kind: int, now: float) -> int:
        """`link_readable` for what the lane did not deliver: HANDLED with the batch's
        CONTROL/REFUSED bits in the sign's place (see `handled_kinds`), or 0 (the batch
        path, `pre` set when it holds a datagram already read)."""
        if kind in (AUTH_FAILED, REPLAYED):
            assert key is not None
            if kind == AUTH_FAILED:
                key.auth_failures += 1
            else:
                key.replays += 1
            self._stats.udp_rx += 1
            self._client.lane_refused(key, self.buf, result >> _SIZE_SHIFT, now)
            return HANDLED - REFUSED
        if kind == OPENED_TAKE:
            assert key is not None
            key.opened += 1
            self._stats.udp_rx += 1
            buf = self._payload(result)
            return self._deliver(buf, self._client.lane_opened(buf, key, result >> _SIZE_SHIFT,
                                                               now))
        return self._link_rest(result)


class ServerLane(_LaneGlue):
    """A `Lane` for a `Server` endpoint: many clients, so the lane reads and the server's own
    maps find the client (by peer-id, by destination), then the lane seals or opens on that
    client's current key in a second call. A datagram from another address than the
    client's (a float), P_DATA_V1, a key other than the current one, client-to-client or a
    client without an IPv4 address go the Python way, which decides them."""

    __slots__ = ("_by_id", "_c2c", "_server")

    def __init__(self, lane: Lane, server: Server, device: TunDevice, buf: Buffer,
                 block: memoryview, gso: GsoSender, output: DeviceOutput, stats: DriverStats,
                 native: type[Aead]) -> None:
        super().__init__(lane, device, buf, block, gso, output, stats, native)
        self._server = server
        self._by_id = server.table.by_id  # (the same list for the server's life)
        self._c2c = bool(server.settings.client_to_client)

    def device_readable(self) -> None:
        """As `ClientLane.device_readable`; the client found by the packet's destination: by
        the lane itself where the client's `lane_plan` still holds, else by `_route`."""
        if self.device_busy:
            self._device_batch(0)
            return
        try:
            lane = self._lane
            result = lane.device()
            kind = result & _KIND
            if kind in (SENT, SEND_FAILED):  # routed and sealed on the entry's plan
                entry = lane.entry
                assert entry is not None
                session = entry.session
                self._count_sent(entry, session.ring.current, session.tx_peer_id, kind,
                                 result >> _SIZE_SHIFT)
                if not self._touched:
                    return
                first = HANDLED
            elif kind == TAKE_LONE and lane.held:
                first = self._route(result)
            else:
                first = self._device_rest(result)
        except Exception as exc:  # a bug: this packet is lost, nothing else
            self._fault("the handling of a packet from the device", exc)
            first = HANDLED
        self._device_done(first)

    def _route(self, result: int) -> int:
        """The held lone packet's client found here (the server's routing), sealed and sent
        by a second call, and planned for the lane's next packet to it; else `_device_rest`."""
        lane = self._lane
        size = result >> _SIZE_SHIFT
        headroom = self._headroom
        entry = self._server.lane_route(self._block[headroom:headroom + size])
        if entry is not None:
            session = entry.session
            key = session.ring.current
            if (session.comp is None and isinstance(key, DataKey)
                    and isinstance(sealer := key.sealer, self._native)):
                peer_id = session.tx_peer_id
                remote = session.remote_addr
                host, port = remote[:2]
                if peer_id is None:
                    word, v2 = key._v1_op, False
                else:
                    word, v2 = key._v2_word | peer_id, True
                mssfix = session.mssfix
                # What this decision was made from, and its arguments, for the lane's
                # next packet to this client (tunnel/_lane.c checks each input is still
                # the live one before it uses the rest).
                entry.lane_plan = (session, key, remote, peer_id, None, mssfix,
                                   sealer, word, v2, bool(mssfix), host, port)
                result = lane.seal_send(key, sealer, word, v2, bool(mssfix), host, port)
                kind = result & _KIND
                if kind in (SENT, SEND_FAILED):
                    self._count_sent(entry, key, peer_id, kind, size)
                    return HANDLED
            else:
                entry.lane_plan = None
        return self._device_rest(result)

    def _count_sent(self, entry: PeerEntry, key: object, peer_id: int | None, kind: int,
                    size: int) -> None:
        """`encrypt`'s counters for a packet of `size` bytes the lane sealed with `key`."""
        assert isinstance(key, DataKey)
        key.sealed += 1
        entry.session.last_tx = self._time()
        self._server.lane_sent(entry, size, size + (
            DATA_V1_OVERHEAD if peer_id is None else DATA_V2_OVERHEAD))
        self._sent(kind)

    def link_readable(self) -> None:
        """As `ClientLane.link_readable`; the client found by the datagram's peer-id: by the
        lane itself where the client's `lane_open_plan` still holds, else by `_held`."""
        if self.link_busy:
            self._socket_batch(None)
            return
        now = self._time()
        try:
            lane = self._lane
            result = lane.link(now)
            self.pre = None
            kind = result & _KIND
            if kind != LINK_TAKE and (entry := lane.entry) is not None:
                # Opened (or refused) on the entry's plan.
                session = entry.session
                handled = self._opened(entry, session.ring.current, session.remote_addr,
                                       result, result >> _SIZE_SHIFT, now)
                if handled == HANDLED and not self._touched:
                    return
            elif kind == LINK_TAKE and lane.held:
                handled = self._held(result, now)
            else:
                handled = self._link_rest(result)
        except Exception as exc:  # a bug: this datagram is lost, nothing else
            self._fault("the handling of a datagram from the link", exc)
            handled = HANDLED
        self._link_done(handled, now)

    def _held(self, result: int, now: float) -> int:
        """The held datagram's client found here by its peer-id and opened by a second call
        (`_open`, which plans again); else `_link_rest`."""
        block = self._block
        at = self._headroom
        first = block[at]
        if first >> 3 == _P_DATA_V2 and result >> _SIZE_SHIFT >= DATA_V2_OVERHEAD:
            peer_id = (block[at + 1] << 16) | (block[at + 2] << 8) | block[at + 3]
            by_id = self._by_id
            entry = by_id[peer_id] if peer_id < len(by_id) else None
            if entry is not None:
                handled = self._open(entry, first & 7, result >> _SIZE_SHIFT, now)
                if handled:
                    return handled
        return self._link_rest(result)

    def _open(self, entry: PeerEntry, key_id: int, size: int, now: float) -> int:
        """The held datagram for `entry`'s client: opened by the lane, or 0 (not handled)."""
        session = entry.session
        key = session.data_keys[key_id]
        if not (key is session.ring.current and session.comp is None
                and isinstance(key, DataKey) and isinstance(opener := key.opener, self._native)):
            return 0
        addr = session.remote_addr
        vip = entry.vip_int
        mssfix = session.mssfix
        accept = key.replay.accept
        deliver = vip >= 0 and not self._c2c
        # What this decision was made from, and its arguments, for the lane's next datagram
        # from this client (tunnel/_lane.c checks each input is still the live one).
        entry.lane_open_plan = (session, key, addr, None, mssfix, vip, key_id, opener, accept,
                                addr[0], addr[1], vip, bool(mssfix), deliver)
        result = self._lane.open_write(key_id, opener, accept, addr[0], addr[1], vip,
                                       bool(mssfix), deliver, now)
        return self._opened(entry, key, addr, result, size, now)

    def _opened(self, entry: PeerEntry, key: object, addr: tuple[str, int], result: int,
                size: int, now: float) -> int:
        """What the lane's open of a datagram of `size` bytes from `entry`'s client with
        `key` came to: counted and handed on (HANDLED and the batch's bits), or 0."""
        assert isinstance(key, DataKey)
        kind = result & _KIND
        server = self._server
        if kind in (DELIVERED, TUN_DROPPED):
            key.opened += 1
            server.lane_delivered(entry, size, size - _overhead(result), now)
            self._written(kind)
            return HANDLED
        if kind in (AUTH_FAILED, REPLAYED):
            if kind == AUTH_FAILED:
                key.auth_failures += 1
            else:
                key.replays += 1
            self._stats.udp_rx += 1
            server.lane_refused(entry, key, self.buf, addr, size, now)
            return HANDLED - REFUSED
        if kind == OPENED_TAKE:
            key.opened += 1
            self._stats.udp_rx += 1
            buf = self._payload(result)
            return self._deliver(buf, server.lane_opened(entry, key, buf, addr, size, now))
        return 0  # LINK_TAKE: not from the client's address (a float); the Python path


def handled_kinds(result: int) -> int:
    """The CONTROL/REFUSED bits a lane's `link` result below HANDLED carries."""
    return HANDLED - result


def lane_applies(endpoint: object, device: object, sock: socket.socket) -> bool:
    """Whether a driver over these gets a lane (the module docstring)."""
    return (lane_wanted() and isinstance(endpoint, Client | Server)
            and isinstance(device, TunDevice)
            and sock.type == socket.SOCK_DGRAM
            and sock.family in (socket.AF_INET, socket.AF_INET6))


def attach_lane(endpoint: object, device: object, sock: socket.socket, pool: BufferPool,
                runs: RunPool, link: UdpLink, gso: GsoSender, output: DeviceOutput,
                stats: DriverStats) -> ClientLane | ServerLane | None:
    """A lane for this driver where it applies, else None. Its buffer is one of the
    driver's `runs` blocks (held for its life, counted with the runs), cut to the packet
    pool's buffer size, so the lane takes what a pool buffer takes and no more."""
    if not lane_applies(endpoint, device, sock):
        return None
    assert isinstance(endpoint, Client | Server) and isinstance(device, TunDevice)
    from tunnel._aead import Aead, Lane

    try:
        run = runs.acquire()
    except PoolExhausted:  # a caller's own runs without a block for it: no lane
        return None
    frame = pool.frame
    run.reset(0)
    block = run.tailroom_view()[:frame.buffer_size]
    buf = Buffer.over(block)
    headroom = frame.headroom
    buf.reset(headroom)
    tail = buf.tailroom_view()
    lane = Lane(device.fileno(), sock.fileno(), device.read_offset, block, headroom,
                link.rest(len(tail)))
    if device.tso:
        lane.set_offloaded(device.read_area)
    if isinstance(endpoint, Client):
        return ClientLane(lane, endpoint, device, buf, block, gso, output, stats, Aead)
    lane.set_routes(endpoint.table.by_vip)  # (the same dict and list for the server's life)
    lane.set_peers(endpoint.table.by_id)
    return ServerLane(lane, endpoint, device, buf, block, gso, output, stats, Aead)
