"""TSO super-packets sealed in batch: one 64 KB TCP read becomes one run of datagrams.

`TsoSegmenter` (tunnel/io/tso.py) hands the data path one segment at a time, and each then
pays the whole per-packet path (route, session, seal, GSO copy: ~8 us of Python a segment),
so a TSO read saved a system call and bought nothing. Here the segments of one super-packet
are cut, sealed and sent as a whole, with the per-segment Python work down to one AEAD call:

  1. `SuperCut.load`: the virtio-net and IP/TCP headers parsed once (IPv4, no IP options,
     TCP, not a SYN/RST; anything else goes the per-segment way);
  2. the endpoint routes the super-packet once (all its segments share the flow) and checks
     its session and key (`seal_segments`: AEAD keys only, no compression);
  3. `fill`: every segment is written as a row of one 2D numpy array whose rows are whole
     datagrams-to-be (24 bytes for opcode/peer-id, packet-id and tag, then the segment, then
     16 bytes where `encrypt_into` leaves the tag): in one native pass where the extension
     is built (`tunnel._aead.fill_segments`, tunnel/_tso.c: two copies and two sums a row),
     else vectorised (the payloads in ONE copy, the IP total length/id/checksum and TCP
     sequence number/flags/checksum of all rows at once, the checksums as one reduction);
  4. `DataKey.seal_rows` (tunnel/protocol/datachannel.py): the packet-ids and headers of all
     rows stamped at once (`stamp`), then one tight loop of `encrypt_into` calls, then the tags
     moved to their slots at once (`sealed`);
  5. `GsoSender.send_rows`: one `sendmsg` with `UDP_SEGMENT` whose iov is the list of row
     views (the kernel concatenates it: no compaction copy).

The segments are exactly what the kernel's own segmentation (and `TsoSegmenter`) makes, so
any peer, stock included, sees ordinary packets.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from core import Buffer, RunPool
from tunnel.io.gso import GsoSender
from tunnel.io.offload import VNET_HDR, VNET_HDR_SIZE
from tunnel.protocol.checksum import internet_sum

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_native_fill: Callable[[memoryview, int, int, memoryview, int, int, int], None] | None
try:
    from tunnel._aead import fill_segments as _native_fill
except ImportError:  # the extension is optional (setup.py): the numpy form then
    _native_fill = None

__all__ = [
    "ROWS_RUN_SIZE", "ROW_PLAIN_AT", "SuperCut", "SuperSender", "attach_super_sender",
    "super_sender_wanted",
]

Address = tuple[str, int]

ROW_PLAIN_AT: Final = 24
"""Where a row's segment starts: P_DATA_V2's op|peer-id (4), packet-id (4) and tag (16) in
front. A P_DATA_V1 datagram starts at 3 (its one op byte just before the packet-id)."""
_TAG: Final = 16
_GSO_TCPV4: Final = 1
_GSO_ECN: Final = 0x80
_TCP: Final = socket.IPPROTO_TCP
_FIN_PSH: Final = 0x09
_SYN_RST: Final = 0x06
_CWR: Final = 0x80
_MAX_ROWS: Final = 128  # more segments than this (a tiny MSS) go the per-segment way
ROWS_RUN_SIZE: Final = 96 * 1024
"""The run block the rows live in: a 64 KB super-packet's segments with 24 + 16 bytes each
around them, rows rounded to 16 (any MSS from 536 up: at most ~80 KB). A cut that does not
fit goes the per-segment way."""
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_LITTLE: Final = sys.byteorder == "little"


def _swap16(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


class SuperCut:
    """One TCP super-packet as rows of datagrams-to-be (see the module docstring).

    After `load` (False: not for this path): `destination` (the IPv4 destination as an int,
    for the route), `count` rows, `plain_bytes` (the segments' total size). `fill()` writes the
    segments; `stamp`/`sealed` are `DataKey.seal_rows`'s; `datagrams()` the views to send and
    `segment()` the run's segment size.
    """

    __slots__ = (
        "_be",
        "_cache",
        "_flags",
        "_flat",
        "_hlen",
        "_ip_id",
        "_le",
        "_mss",
        "_native",
        "_np",
        "_packet",
        "_plens",
        "_pseudo",
        "_rem",
        "_rows",
        "_seq",
        "_size",
        "_stride",
        "_v2",
        "_views",
        "count",
        "destination",
        "plain_bytes",
        "run",
    )

    def __init__(self, run: Buffer | None = None, native: bool = True) -> None:
        """`run`: the block the rows live in, from a `RunPool` (held for the owner's life;
        ROWS_RUN_SIZE fits any super-packet); None: a pool of its own. `native`: `fill` in
        the extension's pass where it is built (False: the numpy form, for tests)."""
        import numpy  # (imported where used: only TSO readers need it)

        self._np = numpy
        self._native = _native_fill if native else None
        self.run = run if run is not None else RunPool(ROWS_RUN_SIZE, 1).acquire()
        self._flat = self.run.tailroom_view()
        self._rows: npt.NDArray[np.uint8] = numpy.zeros((0, 0), numpy.uint8)
        self._be: npt.NDArray[np.uint16] = self._rows.view(">u2")
        self._le: npt.NDArray[np.uint16] = self._rows.view("=u2")
        # (stride, segment payload) -> the views of full rows: plaintext, encrypt output,
        # V2 AAD, V1 AAD, V2 datagram, V1 datagram (built once: a flow's MSS does not change).
        self._cache: dict[tuple[int, int], tuple[list[memoryview], ...]] = {}
        self._views: tuple[list[memoryview], ...] = ()
        self._packet = memoryview(b"")
        self._stride = self._hlen = self._mss = self._rem = self._size = 0
        self._ip_id = self._seq = self._flags = self._pseudo = 0
        self._plens = (0, 0)
        self._v2 = True
        self.count = self.destination = self.plain_bytes = 0

    def load(self, frame: memoryview, size: int) -> bool:
        """Parse a frame as read (virtio-net header + `size` bytes of packet); True if it is a
        TCP/IPv4 super-packet this path cuts. Nothing is written yet."""
        _flags, gso_type, _hdr_len, mss, csum_start, _off = VNET_HDR.unpack_from(frame)
        if gso_type & ~_GSO_ECN != _GSO_TCPV4 or csum_start != 20 or not mss or mss & 1:
            return False
        packet = frame[VNET_HDR_SIZE : VNET_HDR_SIZE + size]
        if size < 40 or packet[0] != 0x45 or packet[9] != _TCP:
            return False  # IPv6, IP options, not TCP: the per-segment way
        hlen = 20 + (packet[32] >> 4) * 4
        flags = packet[33]
        body = size - hlen
        if hlen < 40 or body <= 0 or flags & _SYN_RST:
            return False
        count = -(-body // mss)
        if count > _MAX_ROWS or count * _stride(hlen + mss) > len(self._flat):
            return False
        self._packet = packet
        self._size = size
        self._hlen, self._mss, self._flags = hlen, mss, flags
        self._rem = body - (count - 1) * mss  # the last segment's payload (1..mss)
        (self._ip_id,) = _U16.unpack_from(packet, 4)
        (self._seq,) = _U32.unpack_from(packet, 24)
        (self.destination,) = _U32.unpack_from(packet, 16)
        self.count = count
        self.plain_bytes = body + count * hlen
        return True

    def _layout(self) -> None:
        """The 2D view with this cut's stride, and the cached views of its full rows."""
        np = self._np
        count = self.count
        seg = self._hlen + self._mss
        stride = _stride(seg)
        fit = min(_MAX_ROWS, len(self._flat) // stride)  # (`load` checked the cut fits)
        key = (stride, seg)
        views = self._cache.get(key)
        if views is None:
            if len(self._cache) > 8:
                self._cache.clear()
            flat = self._flat
            starts = range(0, fit * stride, stride)
            p = ROW_PLAIN_AT
            views = (
                [flat[s + p : s + p + seg] for s in starts],
                [flat[s + p : s + p + seg + _TAG] for s in starts],
                [flat[s : s + 8] for s in starts],
                [flat[s + 4 : s + 8] for s in starts],
                [flat[s : s + p + seg] for s in starts],
                [flat[s + 3 : s + p + seg] for s in starts],
            )
            self._cache[key] = views
        if stride != self._stride:
            rows = np.frombuffer(self._flat, np.uint8, fit * stride).reshape(fit, stride)
            self._rows = rows
            self._be = rows.view(">u2")
            self._le = rows.view("=u2")
            self._stride = stride
        last = self._hlen + self._rem
        self._plens = (seg, last)
        if last == seg:
            self._views = tuple(v[:count] for v in views)
        else:
            flat = self._flat
            s = (count - 1) * stride
            p = ROW_PLAIN_AT
            ends = (
                flat[s + p : s + p + last],
                flat[s + p : s + p + last + _TAG],
                flat[s : s + 8],
                flat[s + 4 : s + 8],
                flat[s : s + p + last],
                flat[s + 3 : s + p + last],
            )
            self._views = tuple([*v[:count - 1], end] for v, end in zip(views, ends, strict=True))

    def fill(self) -> None:
        """Write every segment into its row: header, payload, lengths, ids, sequence numbers,
        flags and both checksums (what `inet_gso_segment`/`tcp_gso_segment` would write)."""
        self._layout()
        native = self._native
        if native is not None:
            native(self._flat, self._stride, self.count, self._packet, self._hlen, self._mss,
                   ROW_PLAIN_AT)
            return
        np = self._np
        count, hlen, mss, rem = self.count, self._hlen, self._mss, self._rem
        packet = self._packet
        p = ROW_PLAIN_AT
        rows = self._rows[:count]
        be = self._be[:count]
        le = self._le[:count]
        full = count - 1 if rem < mss else count
        rows[:, p : p + hlen] = np.frombuffer(packet, np.uint8, hlen)
        if full:
            rows[:full, p + hlen : p + hlen + mss] = np.frombuffer(
                packet, np.uint8, full * mss, hlen).reshape(full, mss)
        if full < count:
            at = hlen + full * mss
            rows[full, p + hlen : p + hlen + rem] = np.frombuffer(packet, np.uint8, rem, at)
            rows[full, p + hlen + rem : p + hlen + mss] = 0  # the checksum sums whole rows
        index = np.arange(count, dtype=np.uint32)
        total = np.full(count, hlen + mss, np.uint32)
        total[-1] = hlen + rem
        w = p // 2  # the IPv4 header's first word in a row
        be[:, w + 1] = total
        be[:, w + 2] = (index + self._ip_id) & 0xFFFF
        be[:, w + 5] = 0
        seq = (index.astype(np.uint64) * mss + self._seq) & 0xFFFFFFFF
        t = w + 10  # the TCP header's first word
        be[:, t + 2] = seq >> 16
        be[:, t + 3] = seq & 0xFFFF
        be[:, t + 8] = 0
        flags = self._flags
        column = rows[:, p + 33]
        column[:] = flags & ~(_FIN_PSH | _CWR)
        column[0] = flags & ~_FIN_PSH
        column[-1] = flags & ~_CWR if count > 1 else flags
        # Sums of native-order words: each the byte-swapped ones'-complement sum (RFC 1071),
        # so the complement written back in native order is the right checksum.
        ip = le[:, w : w + 10].sum(axis=1, dtype=np.uint32)
        ip = (ip & 0xFFFF) + (ip >> 16)
        ip = (ip & 0xFFFF) + (ip >> 16)
        le[:, w + 5] = ~ip & 0xFFFF
        tcp_len = total - 20
        pseudo = internet_sum(packet[12:20]) + _TCP
        if _LITTLE:
            pseudo = _swap16(pseudo)
            tcp_len = ((tcp_len & 0xFF) << 8) | (tcp_len >> 8)
        tcp = le[:, t : (p + hlen + mss) // 2].sum(axis=1, dtype=np.uint32) + tcp_len + pseudo
        tcp = (tcp & 0xFFFF) + (tcp >> 16)
        tcp = (tcp & 0xFFFF) + (tcp >> 16)
        le[:, t + 8] = ~tcp & 0xFFFF

    # -- DataKey.seal_rows -----------------------------------------------------------------

    def stamp(
        self, first_word: int, v2: bool, first_pid: int,
    ) -> tuple[list[memoryview], list[memoryview], list[memoryview]]:
        """Write every row's op|peer-id (V2: the whole word; V1: the op byte) and packet-id
        (`first_pid` counting up); the rows' plaintexts, encrypt outputs and AADs."""
        np = self._np
        count = self.count
        be = self._be[:count]
        pids = np.arange(first_pid, first_pid + count, dtype=np.uint64)
        self._v2 = v2
        if v2:
            be[:, 0] = first_word >> 16
            be[:, 1] = first_word & 0xFFFF
        else:
            self._rows[:count, 3] = first_word
        be[:, 2] = pids >> 16
        be[:, 3] = pids & 0xFFFF
        views = self._views
        return views[0], views[1], views[2] if v2 else views[3]

    def sealed(self) -> None:
        """Each row's tag, which `encrypt_into` left behind its ciphertext, to its slot."""
        count = self.count
        rows = self._rows
        p = ROW_PLAIN_AT
        seg, last = self._plens
        full = count if last == seg else count - 1
        if full:
            rows[:full, 8:p] = rows[:full, p + seg : p + seg + _TAG]
        if full < count:
            rows[full, 8:p] = rows[full, p + last : p + last + _TAG]

    def datagrams(self) -> list[memoryview]:
        """The sealed datagrams (after `DataKey.seal_rows`), one view per row."""
        return self._views[4] if self._v2 else self._views[5]

    def segment(self) -> int:
        """The run's datagram size (all but the last; the last may be shorter)."""
        return ROW_PLAIN_AT + self._plens[0] - (0 if self._v2 else 3)

    @property
    def overhead(self) -> int:
        """What sealing added to each segment (op|peer-id or op, packet-id, tag)."""
        return ROW_PLAIN_AT - (0 if self._v2 else 3)


def _stride(segment: int) -> int:
    """A row's size for segments of `segment` bytes: header room, segment, tag, to 16."""
    return (ROW_PLAIN_AT + segment + _TAG + 15) & ~15


SealSegments = Callable[[SuperCut, float], "Address | None"]
SendRows = Callable[[list[memoryview], int, Address], None]
Fault = Callable[[str, Exception], None]


@runtime_checkable
class SuperDevice(Protocol):
    """What a device that hands over TSO super-packets offers (tunnel/io/tun.py's TunDevice):
    whether TSO reads were granted, the callback each super-packet goes to, and the segments
    one device callback may take that way."""

    tso: bool
    on_super: Callable[[memoryview, int], int] | None
    super_budget: int


@runtime_checkable
class SegmentSealer(Protocol):
    """An endpoint that seals a super-packet's segments in one batch (`Client`, `Server`)."""

    def seal_segments(self, cut: SuperCut, now: float) -> Address | None: ...


class SuperSender:
    """The glue between a TSO TUN device and the endpoint: `handle(frame, size)` is the
    device's `on_super` (tunnel/io/tun.py), called with every super-packet it reads; it cuts,
    seals and sends it and returns the segments it stood for, or 0 to have it cut and handled
    segment by segment instead (no route, no key yet, a CBC key, compression, IPv6...).

    `begin(now)` at the start of each device callback: the time the seal stamps, and the
    device's budget of segments per callback (so one callback never drains a fast sender)."""

    __slots__ = ("_device", "_fault", "_seal", "_send_rows", "budget", "cut", "now", "segments",
                 "supers")

    def __init__(
        self, device: SuperDevice, seal: SealSegments, send_rows: SendRows, fault: Fault,
        budget: int, run: Buffer | None = None,
    ) -> None:
        """`run`: the rows' block (`SuperCut`)."""
        self._device = device
        self._seal = seal
        self._send_rows = send_rows
        self._fault = fault
        self.budget = budget
        self.cut = SuperCut(run)
        self.now = 0.0
        self.segments = 0  # segments sealed here
        self.supers = 0  # super-packets sealed here

    def begin(self, now: float) -> None:
        self.now = now
        self._device.super_budget = self.budget

    def handle(self, frame: memoryview, size: int) -> int:
        cut = self.cut
        try:
            if not cut.load(frame, size):
                return 0
            addr = self._seal(cut, self.now)
            if addr is None:
                return 0
            self._send_rows(cut.datagrams(), cut.segment(), addr)
        except Exception as exc:  # a bug: this super-packet is lost, nothing else
            self._fault("sealing a TSO super-packet", exc)
            return cut.count or 1
        count = cut.count
        self.segments += count
        self.supers += 1
        return count


def _super_parts(device: object, endpoint: object) -> tuple[SuperDevice, SegmentSealer] | None:
    """`device` and `endpoint` as what a `SuperSender` joins, where both can (a TUN device
    with TSO reads granted, an endpoint with `seal_segments`), else None."""
    if isinstance(device, SuperDevice) and device.tso and isinstance(endpoint, SegmentSealer):
        return device, endpoint
    return None


def super_sender_wanted(device: object, endpoint: object) -> bool:
    """Whether `attach_super_sender` makes one (so the driver counts a run block for it)."""
    return _super_parts(device, endpoint) is not None


def attach_super_sender(
    device: object, endpoint: object, gso: GsoSender, fault: Fault, budget: int,
    runs: RunPool | None = None,
) -> SuperSender | None:
    """Make `endpoint` take `device`'s super-packets whole (a `SuperSender` as the device's
    `on_super`, its rows in a block of `runs`, held; None: a pool of its own), where both can
    (`super_sender_wanted`). None otherwise (and the device cuts them one segment at a time)."""
    parts = _super_parts(device, endpoint)
    if parts is None:
        return None
    device, endpoint = parts
    sender = SuperSender(device, endpoint.seal_segments, gso.send_rows, fault, budget,
                         runs.acquire() if runs is not None else None)
    device.on_super = sender.handle
    return sender
