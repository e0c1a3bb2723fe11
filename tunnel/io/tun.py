"""The Linux TUN device: IP packets between the kernel's network stack and this process.

One fd per queue, opened non-blocking and close-on-exec, in IFF_TUN | IFF_NO_PI mode: each
read(2) returns exactly one IP packet, each write(2) injects one. By default the device is
also opened with IFF_VNET_HDR: the kernel then puts a 10-byte virtio-net header in front of
every packet, which `read_packet` (the packet at `read_offset`) and `write` step over and put
on, so callers still see bare IP packets; what the header buys is `write_frame`, which can
hand the kernel one coalesced TCP packet for many segments (tunnel/io/offload.py). No offload
is asked for on reads (TUNSETOFFLOAD) unless `tso` is given: then the kernel may hand over TCP
super-packets and partial checksums, which `read_packet` cuts and completes (tunnel/io/tso.py),
so a reader still sees complete, plain packets.
Configuration (addresses, MTU, link state) is tunnel/io/netlink.py's job, not this file's.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import select
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from tunnel.io.device import DeviceError, read_into
from tunnel.io.offload import GSO_NONE, VNET_F_NEEDS_CSUM, VNET_HDR_SIZE, ZERO_VNET_HDR
from tunnel.io.partial_csum import PartialChecksums
from tunnel.io.tso import TsoSegmenter

if TYPE_CHECKING:
    from core import Buffer

_native_read_ahead: Callable[[int, memoryview, list[tuple[int, int]], int, int],
                             tuple[int, int, int, int]] | None
try:
    from tunnel._aead import read_ahead as _native_read_ahead
except ImportError:  # the extension is optional (setup.py): the Python loop then
    _native_read_ahead = None

__all__ = ["DeviceError", "TunDevice"]

TUN_PATH = "/dev/net/tun"

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
_MAX_SUPER = 0x10000  # a GSO packet is at most 64 KB (IP total length / payload length)
# A read-ahead of plain packets (TSO): at most this many, in at most this many bytes. Their
# partial checksums are completed in one numpy reduction when at least _CSUM_BATCH_MIN of
# them are _CSUM_BATCH_BYTES or longer (below, a call each is cheaper than the batch's
# fixed cost).
_STAGE_PACKETS = 64
_STAGE_ROOM = 0x10000
_CSUM_BATCH_MIN = 3
_CSUM_BATCH_BYTES = 640  # (checksum.internet_sum's own switch from big int to numpy)
_CSUM = struct.Struct("=HH")  # csum_start, csum_offset in the virtio-net header
_UDP = socket.IPPROTO_UDP

IFNAMSIZ = 16  # includes the terminating NUL: names have at most 15 bytes
_IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")  # struct ifreq: name, ifr_flags, padding to 40
_U16 = struct.Struct("!H")

# A write that fails with one of these loses that packet only; the device stays usable.
# EINVAL: the kernel could not parse it as IPv4/IPv6 (a peer can send anything).
# EIO: the link is administratively down.
_WRITE_DROP_ERRNOS = frozenset({errno.EAGAIN, errno.ENOBUFS, errno.ENOMEM, errno.EINVAL, errno.EIO})


class TunDevice:
    """One queue of a TUN interface. Implements `tunnel.io.device.PacketDevice`."""

    __slots__ = (
        "_big",
        "_csums",
        "_drained",
        "_fd",
        "_file",
        "_next",
        "_poll",
        "_segmenter",
        "_staged",
        "_super_at",
        "_super_size",
        "name",
        "native_read_ahead",
        "offload",
        "on_super",
        "read_offset",
        "read_packet",
        "rx_dropped",
        "rx_packets",
        "super_budget",
        "tso",
        "tx_dropped",
        "tx_packets",
        "vnet_hdr",
        "waiting",
    )

    def __init__(self, fd: int, name: str, *, vnet_hdr: bool = False, tso: bool = False) -> None:
        """Wrap an fd already attached with TUNSETIFF; use `TunDevice.open` instead.

        `tso`: TUNSETOFFLOAD was granted (with `vnet_hdr` only), so reads may be TCP
        super-packets or packets with a checksum to complete (tunnel/io/tso.py)."""
        self.name = name
        self.vnet_hdr = vnet_hdr  # every read and write carries a virtio-net header
        self.offload = vnet_hdr  # so write_frame takes GSO frames (PacketDevice)
        self.read_offset = VNET_HDR_SIZE if vnet_hdr else 0
        self._fd = fd
        # FileIO gives readinto/write that return None on EAGAIN instead of raising, so the
        # common "drained" outcome costs no exception; it also owns (and closes) the fd.
        self._file = io.FileIO(fd, "r+", closefd=True)
        self.rx_packets = 0
        self.rx_dropped = 0  # packets larger than the buffer's tailroom (the kernel cut them)
        self.tx_packets = 0
        self.tx_dropped = 0
        self.tso = tso and vnet_hdr
        # With TSO: who takes a super-packet whole (tunnel/io/tso_rows.py: SuperSender.handle,
        # which returns the segments it sealed and sent, or 0 to have it cut here), and how
        # many segments it may take before a read reports the device drained (so a callback
        # stays bounded; the device stays readable and the next callback goes on).
        self.on_super: Callable[[memoryview, int], int] | None = None
        self.super_budget = 0
        # `waiting`: a zero-timeout poll of this fd alone (one system call, no exception),
        # which the batch reader asks instead of a read that fails with EAGAIN.
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.read_packet: Callable[[memoryview], int]
        self.waiting: Callable[[], bool]
        # With TSO, the frames of one read-ahead lying in `_big`: (start, end) each, served
        # from `_next` on; `_super_at` the start of a super-packet read behind them (-1: none);
        # `_drained`: the last read found the queue empty (nothing read since).
        self._staged: list[tuple[int, int]] = []
        self._next = 0
        self._super_at = self._super_size = -1
        self._drained = False
        if self.tso:
            # Frames are read into this buffer and cut (a super-packet) or copied (a plain
            # packet) from there into the caller's view (a TUN read cannot be steered by
            # size). Room for a read-ahead of plain packets and, behind it, one whole
            # super-packet (a read into less would cut it).
            big = bytearray(_STAGE_ROOM + VNET_HDR_SIZE + _MAX_SUPER + 16)
            self._big = memoryview(big)
            self._csums: PartialChecksums | None = PartialChecksums(big)
            self._segmenter: TsoSegmenter | None = TsoSegmenter()
            # The read-ahead's loop in one native call where the extension is built (its
            # checksums are the same code as `_csums.complete`'s then); False: the Python
            # loop, the same rules (tests hold the two equal).
            self.native_read_ahead = self._csums.native and _native_read_ahead is not None
            self.read_packet = self._read_offloaded
            self.waiting = self._waiting_offloaded
        else:
            self._big = memoryview(b"")
            self._csums = None
            self._segmenter = None
            self.native_read_ahead = False
            self.read_packet = self._read_plain
            self.waiting = self._waiting_plain

    @classmethod
    def open(
        cls, name: str = "tun%d", *, multi_queue: bool = False, vnet_hdr: bool = True,
        tso: bool = False,
    ) -> TunDevice:
        """Create (or attach to) the TUN interface `name`; "%d" lets the kernel number it.

        With `multi_queue`, opening the same name again adds a queue (one fd per reader).
        With `vnet_hdr` (the default) the fd carries virtio-net headers, so `write_frame` can
        pass coalesced TCP packets; a kernel that refuses it gets a plain fd instead.
        With `tso` (and the header) the kernel may hand over 64 KB TCP super-packets and
        packets with partial checksums (TUNSETOFFLOAD), which `read_packet` cuts and completes;
        a kernel that refuses the offload gets plain reads.
        The device lives while an fd is open, unless made persistent.
        """
        encoded = _encode_name(name)
        flags = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
        for extra in (IFF_VNET_HDR, 0) if vnet_hdr else (0,):
            try:
                fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise _open_error(exc) from exc
            ifreq = bytearray(_IFREQ.pack(encoded, flags | extra))
            try:
                fcntl.ioctl(fd, TUNSETIFF, ifreq)
            except OSError as exc:
                os.close(fd)
                if extra and exc.errno == errno.EINVAL:
                    continue  # no IFF_VNET_HDR here: plain packets then
                raise _setiff_error(name, multi_queue, exc) from exc
            # The kernel writes the chosen name back (it expands "%d").
            chosen = bytes(ifreq[:IFNAMSIZ]).split(b"\0", 1)[0].decode("ascii")
            granted = False
            if extra and tso:
                try:
                    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
                    granted = True
                except OSError:
                    pass  # an old kernel: plain reads, as without tso
            return cls(fd, chosen, vnet_hdr=bool(extra), tso=granted)
        raise AssertionError("unreachable: the plain open either returns or raises")

    def fileno(self) -> int:
        return self._file.fileno()  # after close(), FileIO raises ValueError on any use

    @property
    def closed(self) -> bool:
        return self._file.closed

    def read_into(self, buf: Buffer) -> bool:
        """One packet into the empty `buf` (tunnel.io.device.read_into): tests and tools."""
        return read_into(self, buf)

    def _read_plain(self, room: memoryview) -> int:
        """`read_packet` without TSO, the batch reader's fast path: read one frame into `room`
        (the packet lands at `read_offset`), return its length, or 0 when none is waiting.

        Cut packets (as large as `room` allows and shorter than their IP header says) and,
        with the header, anything but a plain packet are dropped and counted (`rx_dropped`).
        Every caller reads through here (`device.read_into` too). The caller keeps one
        `room` for a whole batch.
        """
        readinto = self._file.readinto
        offset = self.read_offset
        limit = len(room)
        while True:
            n = readinto(room)
            if n is None:  # EAGAIN: drained
                return 0
            size = n - offset
            # With the header: only a plain packet (no segmentation, checksum complete), which
            # is all the kernel sends without TUNSETOFFLOAD; refusing the rest keeps a partial
            # checksum from ever being forwarded as if it were complete.
            if (
                size > 0
                and (not offset or (not room[1] and not room[0] & VNET_F_NEEDS_CSUM))
                and (n < limit or (size >= 20 and _ip_length(room[offset:]) <= size))
            ):
                self.rx_packets += 1
                return size
            self.rx_dropped += 1

    def _waiting_plain(self) -> bool:
        """`waiting`: whether the kernel holds a packet for this queue (a read would get one)."""
        return bool(self._poll.poll(0))

    def holds(self) -> bool:
        """Frames read ahead, a super-packet behind them or one being cut (PacketDevice)."""
        segmenter = self._segmenter
        return bool(
            (segmenter is not None and segmenter.pending) or self._next < len(self._staged)
            or self._super_at >= 0
        )

    @property
    def read_area(self) -> memoryview:
        """With TSO: where reads land (room for a read-ahead and a whole super-packet); the
        lone-packet lane reads there too (tunnel/io/lane.py). Empty without TSO."""
        return self._big

    def lane_super(self, size: int) -> None:
        """The lane read a super-packet of `size` bytes to the start of `read_area` (its
        virtio-net header first) while nothing was held here: the next `read_packet` takes it,
        as if the read-ahead had met it first."""
        assert self.tso and not self.holds()
        self._staged.clear()
        self._next = 0
        self._super_at, self._super_size = 0, size
        self._drained = False

    def _waiting_offloaded(self) -> bool:
        """`waiting` with TSO: segments of the super-packet being cut, frames read ahead, or a
        packet queued (not asked again when the last read found the queue empty)."""
        return self.holds() or (not self._drained and bool(self._poll.poll(0)))

    def _read_offloaded(self, room: memoryview) -> int:
        """`read_packet` with TSO: the next segment of the super-packet being cut, or the next
        frame of a read-ahead, its checksum completed if the kernel left it (`NEEDS_CSUM`),
        copied to `room` at `read_offset` (there with a zero header: complete, plain).
        Anything we cannot cut or complete is dropped and counted."""
        segmenter = self._segmenter
        assert segmenter is not None
        offset = VNET_HDR_SIZE
        big = self._big
        staged = self._staged
        while True:
            if segmenter.pending:
                size = segmenter.next_into(room, offset)
                if size:
                    self.rx_packets += 1
                    return size
                segmenter.drop()
                self.rx_dropped += 1
                continue
            if self._next < len(staged):
                start, end = staged[self._next]
                self._next += 1
                size = end - start - offset
                if start < 0 or offset + size > len(room):
                    self.rx_dropped += 1  # (start < 0: its checksum offsets did not fit)
                    continue
                room[offset : offset + size] = big[start + offset : end]
                self.rx_packets += 1
                return size
            at = self._super_at
            if at >= 0:
                self._super_at = -1
                if self._take_super(big[at:], self._super_size):
                    return 0  # the callback's budget of segments is spent
                continue
            if not self._read_ahead():
                return 0

    def _take_super(self, frame: memoryview, size: int) -> bool:
        """A super-packet read: sealed whole (`on_super`) or loaded to be cut here. True when
        that spent the callback's budget of segments."""
        on_super = self.on_super
        if on_super is not None:
            taken = on_super(frame, size)
            if taken:
                self.rx_packets += taken
                self.super_budget -= taken
                return self.super_budget <= 0
        segmenter = self._segmenter
        assert segmenter is not None
        if not segmenter.load(frame, size):
            self.rx_dropped += 1
        return False

    def _read_ahead(self) -> bool:
        """Read frames into `_big` until the queue is empty, a super-packet comes (it waits
        behind the others), or the read-ahead is full; complete the partial checksums of the
        plain ones. False if nothing was read."""
        staged = self._staged
        self._next = 0
        if self.native_read_ahead:
            assert _native_read_ahead is not None
            at, size, drained, dropped = _native_read_ahead(
                self._file.fileno(), self._big, staged, _STAGE_ROOM, _STAGE_PACKETS)
            self._drained = bool(drained)
            if dropped:
                self.rx_dropped += dropped
            if at >= 0:
                self._super_at, self._super_size = at, size
                return True
            return bool(staged)
        staged.clear()
        offset = VNET_HDR_SIZE
        big = self._big
        readinto = self._file.readinto
        pos = dropped = 0
        needs: list[int] = []  # indexes of the staged frames with NEEDS_CSUM
        self._drained = False
        while True:
            try:
                n = readinto(big[pos:] if pos else big)
            except OSError:
                if not staged and not dropped:
                    raise
                break  # what was read is completed and served; the next read meets it again
            if n is None:  # EAGAIN: drained
                self._drained = True
                break
            if n - offset < 20:
                dropped += 1  # (also bounds a device that reads 0 bytes forever)
                if dropped + len(staged) >= _STAGE_PACKETS:
                    break
                continue
            if big[pos + 1] != GSO_NONE:
                self._super_at, self._super_size = pos, n - offset
                break
            if big[pos] & VNET_F_NEEDS_CSUM:
                needs.append(len(staged))
            staged.append((pos, pos + n))
            # The next frame at a 16-byte boundary past this one's end (an odd end's pad
            # byte for the checksum stays free), while a whole super-packet still fits.
            pos = (pos + n + 16) & ~15
            if pos > _STAGE_ROOM or len(staged) + dropped >= _STAGE_PACKETS:
                break
            if len(staged) == 1 and not self._poll.poll(0):
                # A lone packet (the interactive case): a poll says so for less than the
                # read that fails with EAGAIN (an OSError made and dropped inside FileIO);
                # behind a burst that read ends the read-ahead once. Its checksum, if any,
                # is one sum (no batch to set up).
                self._drained = True
                csums = self._csums
                assert csums is not None
                if needs and not csums.complete(offset, n, *_CSUM.unpack_from(big, 6)):
                    staged[0] = (-1, n)
                self.rx_dropped += dropped
                return True
        self.rx_dropped += dropped
        if needs:
            self._complete(needs)
        return bool(staged) or self._super_at >= 0

    def _complete(self, needs: list[int]) -> None:
        """Complete the partial checksums of the staged frames `needs`; a frame whose offsets
        do not fit its packet is marked dropped (start -1). One native call each where the
        extension is built; else long packets go into one reduction where there are enough
        of them and short ones (an ACK, a small datagram) are one big-int sum each, cheaper
        than their share of the batch's fixed cost."""
        csums = self._csums
        assert csums is not None
        big = self._big
        staged = self._staged
        unpack = _CSUM.unpack_from
        complete = csums.complete
        if csums.native:
            # The extension's loop per packet costs less than a reduction's set-up and its
            # share of the lists (tunnel/_csum.c).
            for index in needs:
                start, end = staged[index]
                if not complete(start + VNET_HDR_SIZE, end, *unpack(big, start + 6)):
                    staged[index] = (-1, end)
            return
        long: list[tuple[int, int, int, int, int]] = []  # index, packet, end, offsets
        for index in needs:
            start, end = staged[index]
            csum_start, csum_offset = unpack(big, start + 6)
            packet = start + VNET_HDR_SIZE
            if end - packet - csum_start < _CSUM_BATCH_BYTES or (csum_start | csum_offset) & 1:
                # Short, or (never from Linux) off the word grid: one sum of its own.
                if not complete(packet, end, csum_start, csum_offset):
                    staged[index] = (-1, end)
            else:
                long.append((index, packet, end, csum_start, csum_offset))
        if len(long) < _CSUM_BATCH_MIN:
            for index, packet, end, csum_start, csum_offset in long:
                if not complete(packet, end, csum_start, csum_offset):
                    staged[index] = (-1, end)
            return
        bounds: list[int] = []  # in 16-bit words: each batched packet's sum, start and end
        fields: list[int] = []
        udp: list[bool] = []
        for index, packet, end, csum_start, csum_offset in long:
            begin = packet + csum_start
            field = begin + csum_offset
            if field + 2 > end or csum_start < 20:  # `complete`'s checks
                staged[index] = (-1, end)
                continue
            if end & 1:
                big[end] = 0  # the odd end's pad byte (the read-ahead leaves it free)
            bounds += (begin >> 1, (end + 1) >> 1)
            fields.append(field >> 1)
            udp.append(big[packet + (9 if big[packet] >> 4 == 4 else 6)] == _UDP)
        if fields:
            csums.complete_many(bounds, fields, udp)

    def write(self, data: memoryview) -> bool:
        """Write one packet; False (counted in `tx_dropped`) when the kernel refused it."""
        if self.vnet_hdr:
            return self._writev((ZERO_VNET_HDR, data))
        return self.write_frame(data)

    def write_frame(self, frame: memoryview) -> bool:
        """Write one frame as is: with `vnet_hdr`, a virtio-net header and its packet."""
        file = self._file
        try:
            written = file.write(frame)
        except OSError as exc:
            if exc.errno not in _WRITE_DROP_ERRNOS:
                raise
            written = None
        if written is None:
            self.tx_dropped += 1
            return False
        self.tx_packets += 1
        return True

    def _writev(self, parts: tuple[bytes, memoryview]) -> bool:
        try:
            os.writev(self._fd, parts)
        except OSError as exc:
            if exc.errno not in _WRITE_DROP_ERRNOS:
                raise
            self.tx_dropped += 1
            return False
        self.tx_packets += 1
        return True

    def set_persist(self, persist: bool) -> None:
        """Keep the interface after the last fd closes (True), or not (False, the default)."""
        try:
            fcntl.ioctl(self.fileno(), TUNSETPERSIST, int(persist))
        except OSError as exc:
            why = f"cannot set persist on {self.name}: {exc.strerror}"
            raise DeviceError(exc.errno, why) from exc

    def close(self) -> None:
        """Close this queue's fd; the interface goes away with its last fd unless persistent."""
        self._file.close()  # idempotent

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._file.closed else f"fd={self._file.fileno()}"
        return f"<TunDevice {self.name} {state}>"


def _ip_length(packet: memoryview) -> int:
    """The length an IPv4/IPv6 packet's header declares (0 if it is neither)."""
    version = packet[0] >> 4
    length: int
    if version == 4:
        (length,) = _U16.unpack_from(packet, 2)  # total length
    elif version == 6:
        (length,) = _U16.unpack_from(packet, 4)  # payload length, after the fixed header
        length += 40
    else:
        length = 0
    return length


def _encode_name(name: str) -> bytes:
    try:
        encoded = name.encode("ascii")
    except UnicodeEncodeError:
        encoded = b""
    if not encoded or len(encoded) >= IFNAMSIZ or any(c in encoded for c in b"/: \t\n\0"):
        raise DeviceError(
            errno.EINVAL,
            f"invalid TUN device name {name!r}: 1 to {IFNAMSIZ - 1} ASCII characters, "
            "no '/', ':' or whitespace",
        )
    return encoded


def _open_error(exc: OSError) -> DeviceError:
    code = exc.errno or errno.EIO
    if code == errno.ENOENT:
        why = f"no {TUN_PATH}: load the tun module (modprobe tun)"
    elif code in (errno.ENODEV, errno.ENXIO):
        why = f"{TUN_PATH} has no driver: load the tun module (modprobe tun)"
    elif code in (errno.EACCES, errno.EPERM):
        why = f"cannot open {TUN_PATH}: need root or CAP_NET_ADMIN"
    else:
        why = f"cannot open {TUN_PATH}: {exc.strerror}"
    return DeviceError(code, why)


def _setiff_error(name: str, multi_queue: bool, exc: OSError) -> DeviceError:
    code = exc.errno or errno.EIO
    if code == errno.EPERM:
        why = f"cannot create TUN device {name!r}: need root or CAP_NET_ADMIN"
    elif code == errno.EBUSY:
        why = (
            f"TUN device {name!r} is busy: another process has it open"
            + ("" if multi_queue else " (open it with multi_queue=True in both for more queues)")
        )
    elif code == errno.EINVAL:
        why = (
            f"cannot use {name!r} as a TUN device: an interface of another type has that name, "
            "or it exists with a different multi-queue setting"
        )
    else:
        why = f"cannot create TUN device {name!r}: {exc.strerror}"
    return DeviceError(code, why)
