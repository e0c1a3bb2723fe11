"""The lone-packet lane: an idle tunnel's packet through the client in one native call per hop.

An interactive packet (ping, SSH, an RPC) arrives alone, and every wakeup on an idle tunnel
runs cold: each distinct line it runs costs as if it were the first. The Python hop
(datapath.py -> Client -> Session -> DataKey -> Buffer -> GsoSender) was ~30 calls per
packet, most of the round trip's gap to the stock binary (docs/PERFORMANCE.md). The lane
(`tunnel._aead.Lane`, tunnel/_lane.c) does the ordinary case in one call on the key's own
libcrypto contexts and packet-id counter:

* device side: read the packet, nothing behind it, the send key set, not a SYN under mssfix
  -> sealed where it lies in the lane's pool buffer and sent to the server;
* link side: one datagram, nothing behind it, from the server, P_DATA of the current key ->
  authenticated, the key's replay window, written to the TUN.

Everything else comes back as what was read and where, and goes on through the Python path
(`outbound_batch` / `inbound_batch` with the packet already read, or the session's `opened`
for an opened payload it does not deliver): the same checks in the same order, so there is no
second implementation of a decision. The counters the Python path keeps (driver stats,
traffic, key, device, GSO and coalescer counts) are kept here the same way.

The lane mirrors the session on every call (`_sync`): the current key, the peer-id, the
compression framing, mssfix and the server's address, so a rekey, a push or a reconnect is
seen before the next packet. Used
only where it applies: the client endpoint over UDP, a real TUN without TSO reads, the
libcrypto AEAD, no compression framing; `TUNNEL_LANE=0` turns it off (A/B benchmarks).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import TYPE_CHECKING, Final

from core import Buffer, BufferPool
from tunnel.io.batch_kinds import CONTROL, REFUSED
from tunnel.io.datapath import DeviceOutput, UdpLink
from tunnel.io.gso import GsoSender
from tunnel.io.tun import TunDevice
from tunnel.protocol.aead import BACKEND, NATIVE_AEAD
from tunnel.protocol.client import Client
from tunnel.protocol.datachannel import DataKey
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN

if TYPE_CHECKING:
    from tunnel._aead import Aead, Lane
    from tunnel.io.driver_stats import DriverStats
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
_KIND: Final = 15
_V1: Final = 16
_SIZE_SHIFT: Final = 5

HANDLED: Final = -1
"""`device`/`link`: the lane did the whole wakeup's work."""

# Bytes a sealed packet gains: op|kid + peer-id + packet-id + tag (V2), op|kid + packet-id +
# tag (V1).
_V2_OVERHEAD: Final = 24
_V1_OVERHEAD: Final = 21

_PORT: Final = struct.Struct(">H")


def lane_wanted() -> bool:
    """Whether this process may use lanes at all (`TUNNEL_LANE=0`: never)."""
    return (NATIVE_AEAD is not None and BACKEND == "libcrypto"
            and os.environ.get("TUNNEL_LANE", "1") != "0")


def sockaddr_of(addr: tuple[str, int], family: int) -> bytes | None:
    """`addr` as the kernel's sockaddr_in / sockaddr_in6 for `family`; None when it is not a
    numeric address of that family (the lane then takes nothing: the Python path does)."""
    host, port = addr[0], addr[1]
    try:
        packed = socket.inet_pton(family, host)
    except (OSError, ValueError):
        return None
    head = struct.pack("=H", family) + _PORT.pack(port)
    if family == socket.AF_INET:
        return head + packed + bytes(8)
    return head + bytes(4) + packed + bytes(4)  # flowinfo, address, scope 0


class ClientLane:
    """The glue between the driver's callbacks and one `Lane` for a `Client` endpoint."""

    __slots__ = (
        "_client",
        "_comp",
        "_device",
        "_family",
        "_gso",
        "_headroom",
        "_key",
        "_lane",
        "_mssfix",
        "_native",
        "_output",
        "_peer_id",
        "_session",
        "_stats",
        "_usable",
        "buf",
        "lone",
        "pre",
    )

    def __init__(self, lane: Lane, client: Client, device: TunDevice, sock: socket.socket,
                 buf: Buffer, gso: GsoSender, output: DeviceOutput, stats: DriverStats,
                 native: type[Aead]) -> None:
        self._lane = lane
        self._native = native  # the libcrypto context class: the lane works on no other
        self._client = client
        self._device = device
        self._family = sock.family
        self._gso = gso
        self._output = output
        self._stats = stats
        self.buf = buf  # the lane's pool buffer, held for its life; the batch's when it falls back
        self._headroom = buf.offset
        self._session: Session | None = None
        self._key: object = None  # the session's current key, mirrored
        self._usable: DataKey | None = None  # the same, where the lane can use it
        self._peer_id: int | None = None
        self._comp: object = None
        self._mssfix: object = None
        self.lone = False
        # What `link` read and hands to `inbound_batch`: (size, segment, addr, lone).
        self.pre: tuple[int, int, tuple[str, int], bool] | None = None

    def _sync(self) -> DataKey | None:
        """Mirror the session: its current key (the one the lane uses, or None when the lane
        cannot use it), its peer-id and the server's address."""
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
            lane.set_peer(sockaddr_of(session.remote_addr, self._family))
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

    def device(self, now: float) -> int:
        """One device wakeup's first packet: HANDLED, 0 (the batch path from scratch) or the
        size of the packet left in `buf` for `outbound_batch` (`lone` says if alone)."""
        key = self._sync()
        result = self._lane.device()
        kind = result & _KIND
        if kind in (SENT, SEND_FAILED):
            size = result >> _SIZE_SHIFT
            self._device.rx_packets += 1
            stats = self._stats
            stats.tun_rx += 1
            assert key is not None  # the lane seals only with a key set
            key.sealed += 1
            traffic = self._client.traffic
            traffic.tun_rx += size
            traffic.link_tx += size + (_V2_OVERHEAD if self._peer_id is not None
                                       else _V1_OVERHEAD)
            traffic.link_tx_packets += 1
            self._session.last_tx = now  # type: ignore[union-attr]
            gso = self._gso
            gso.runs += 1
            if kind == SENT:
                gso.sent += 1
                stats.udp_tx += 1
            else:
                gso.dropped += 1
                stats.udp_tx_dropped += 1
            return HANDLED
        if kind == EMPTY:
            return HANDLED
        if kind in (TAKE_LONE, TAKE_MORE):
            self._device.rx_packets += 1
            self.lone = kind == TAKE_LONE
            self.buf.reset(self._headroom)
            return result >> _SIZE_SHIFT
        if kind == READ_DROPPED:
            self._device.rx_dropped += 1
        return 0  # READ_DROPPED, READ_ERROR: the batch path reads on (and meets the error)

    def link(self, now: float) -> int:
        """One link wakeup's first datagram: HANDLED with the batch's CONTROL/REFUSED bits in
        the sign's place (HANDLED, HANDLED - CONTROL...: see `handled_kinds`), or 0 (the
        batch path, `pre` set when it holds a datagram already read)."""
        key = self._sync()
        lane = self._lane
        result = lane.link(now)
        kind = result & _KIND
        self.pre = None
        if kind in (DELIVERED, TUN_DROPPED):
            size = result >> _SIZE_SHIFT
            plain = size - (_V1_OVERHEAD if result & _V1 else _V2_OVERHEAD)
            assert key is not None  # the lane opens only with a key set
            key.opened += 1
            stats = self._stats
            stats.udp_rx += 1
            traffic = self._client.traffic
            traffic.link_rx += size
            traffic.link_rx_packets += 1
            self._session.last_rx = now  # type: ignore[union-attr]
            counts = self._output.counts
            counts.packets += 1
            coalescer = self._output.coalescer
            if coalescer is not None:
                coalescer.writes += 1
            if kind == DELIVERED:
                traffic.tun_tx += plain
                self._device.tx_packets += 1
                stats.tun_tx += 1
            else:
                counts.dropped += 1
                self._device.tx_dropped += 1
                stats.tun_tx_dropped += 1
            return HANDLED
        if kind == EMPTY:
            return HANDLED
        if kind == LINK_TAKE:
            addr = lane.addr
            if addr is None:  # not an address family we speak: the Python path reads on
                return 0
            self.pre = (lane.size, lane.segment, addr, lane.lone)
            self.buf.reset(self._headroom)  # the read is there; the batch arms from here
            return 0
        if kind in (AUTH_FAILED, REPLAYED):
            assert key is not None
            if kind == AUTH_FAILED:
                key.auth_failures += 1
            else:
                key.replays += 1
            self._stats.udp_rx += 1
            self._client.lane_refused(key, result >> _SIZE_SHIFT, now)
            return HANDLED - REFUSED
        if kind == OPENED_TAKE:
            assert key is not None
            key.opened += 1
            self._stats.udp_rx += 1
            size = result >> _SIZE_SHIFT
            buf = self.buf
            ct_at = _V1_OVERHEAD if result & _V1 else _V2_OVERHEAD
            buf.reset(self._headroom + ct_at)
            buf.inc_len(size - ct_at)
            verdict = self._client.lane_opened(buf, key, size, now)
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
        if kind == MALFORMED:
            self._stats.malformed += 1
        return 0  # MALFORMED, LINK_ERROR: the batch path reads on


def handled_kinds(result: int) -> int:
    """The CONTROL/REFUSED bits a `ClientLane.link` result below HANDLED carries."""
    return HANDLED - result


def attach_lane(endpoint: object, device: object, sock: socket.socket, pool: BufferPool,
                link: UdpLink, gso: GsoSender, output: DeviceOutput,
                stats: DriverStats) -> ClientLane | None:
    """A lane for this driver where it applies (the module docstring), else None."""
    if not (lane_wanted() and isinstance(endpoint, Client) and isinstance(device, TunDevice)
            and not device.tso and sock.type == socket.SOCK_DGRAM
            and sock.family in (socket.AF_INET, socket.AF_INET6)):
        return None
    from tunnel._aead import Aead, Lane

    buf = pool.acquire()
    headroom = buf.offset
    buf.reset(0)
    block = buf.tailroom_view()
    buf.reset(headroom)
    tail = buf.tailroom_view()
    lane = Lane(device.fileno(), sock.fileno(), device.read_offset, block, headroom,
                link.rest(len(tail)))
    return ClientLane(lane, endpoint, device, sock, buf, gso, output, stats, Aead)
