"""OpenVPN's TCP framing and one non-blocking TCP connection with bounded queues.

Over TCP every OpenVPN packet is preceded by its length as a 16-bit big-endian number
(socket.h: stream_buf); nothing else differs on the wire. The prefix is registered with the
`FrameBuilder` as headroom (`register_stream_framing`), so a sealed data packet gets it with one
`prepend_u16` in place, and leaves in one `send` per batch with the others queued behind it.

Inbound flow (`StreamConnection.receive`):
  1. one `recv_into` of up to `SCRATCH_SIZE` bytes into the driver's scratch buffer, after the
     partial packet kept from the previous read (at most one frame, copied to the front);
  2. whole packets are cut at their length prefixes and handed over as views of the scratch;
     a prefix larger than the frame allows, or a zero length, is a framing error: the
     connection is closed and counted (a TCP stream has no way to resynchronise);
  3. the tail of a packet not yet complete is kept (bounded by the frame size).

Outbound flow (`StreamConnection.queue` / `flush`):
  1. a packet with its prefix is appended to the connection's output buffer, unless that
     already holds `queue_limit` packets' worth of bytes: then it is dropped and counted
     (stock: tcp-queue-limit), so a slow peer never makes us buffer without bound;
  2. `flush` sends what is queued with one `send`; what the kernel did not take stays queued
     and the driver waits for the socket to be writable, so one slow peer never blocks others.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from core import FrameBuilder

__all__ = [
    "LENGTH_PREFIX",
    "SCRATCH_SIZE",
    "FramingError",
    "StreamConnection",
    "register_stream_framing",
]

LENGTH_PREFIX = 2
# One read takes up to this much; with 1.5 KB packets that is ~40 packets per system call.
SCRATCH_SIZE = 64 * 1024
# Packets after which a readiness callback yields to the other sources.
MAX_PACKETS_PER_READ = 128


def register_stream_framing(builder: FrameBuilder) -> None:
    """The 16-bit length in front of every packet on a TCP link: wire bytes, so headroom."""
    builder.reserve("tcp-length-prefix", headroom=LENGTH_PREFIX)


class FramingError(ValueError):
    """The byte stream cannot be an OpenVPN TCP stream (length out of range)."""


Deliver = Callable[[memoryview], None]


class StreamConnection:
    """One TCP peer: framing in, a bounded output queue out. Owns the socket."""

    __slots__ = (
        "_out",
        "_out_packets",
        "_partial",
        "addr",
        "closing",
        "connected",
        "created_at",
        "max_packet",
        "queue_limit",
        "rx_bytes",
        "rx_packets",
        "session_seen",
        "sock",
        "tx_bytes",
        "tx_dropped",
        "tx_packets",
        "writer_armed",
    )

    def __init__(
        self,
        sock: socket.socket,
        addr: tuple[str, int],
        *,
        max_packet: int,
        queue_limit: int,
        now: float,
        connected: bool = True,
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.max_packet = max_packet
        self.queue_limit = queue_limit  # bytes
        self.created_at = now
        self.connected = connected
        self.closing = False  # close once the output queue is empty
        self._partial = b""
        self._out = bytearray()
        self._out_packets = 0
        self.tx_packets = 0
        self.tx_dropped = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.session_seen = False  # the endpoint had a session for this connection
        self.writer_armed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- input ------------------------------------------------------------------------------

    def prime(self, data: bytes) -> None:
        """Bytes already read from the stream (after a proxy's answer): parsed first."""
        if len(data) > self.max_packet + LENGTH_PREFIX:
            raise FramingError("more than one packet arrived with the proxy's answer")
        self._partial = data

    def receive(self, scratch: memoryview, deliver: Deliver) -> bool:
        """Read once and deliver every whole packet; False when the peer closed the stream.

        Raises FramingError on a length the frame does not allow, OSError on a socket error.
        """
        partial = self._partial
        have = len(partial)
        if have:
            scratch[:have] = partial
        try:
            n = self.sock.recv_into(scratch[have:])
        except (BlockingIOError, InterruptedError):
            return True
        if n == 0:
            return False
        self.rx_bytes += n
        end = have + n
        start = 0
        max_packet = self.max_packet
        while end - start >= LENGTH_PREFIX:
            size = (scratch[start] << 8) | scratch[start + 1]
            if size == 0 or size > max_packet:
                self._partial = b""
                raise FramingError(f"packet length {size} (the frame allows 1..{max_packet})")
            stop = start + LENGTH_PREFIX + size
            if stop > end:
                break
            self.rx_packets += 1
            deliver(scratch[start + LENGTH_PREFIX : stop])
            start = stop
        # At most one incomplete packet (<= max_packet + 2 bytes) is carried over.
        self._partial = bytes(scratch[start:end]) if start < end else b""
        return True

    # -- output -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._out)

    def queue(self, framed: memoryview | bytes) -> bool:
        """Queue one packet that already carries its length prefix; False if dropped."""
        if len(self._out) + len(framed) > self.queue_limit:
            self.tx_dropped += 1
            return False
        self._out += framed
        self._out_packets += 1
        return True

    def queue_packet(self, packet: bytes | memoryview) -> bool:
        """Queue a packet without its prefix (control packets: built as bytes)."""
        size = len(packet)
        if len(self._out) + size + LENGTH_PREFIX > self.queue_limit:
            self.tx_dropped += 1
            return False
        self._out += size.to_bytes(2, "big")
        self._out += packet
        self._out_packets += 1
        return True

    def flush(self) -> bool:
        """Send what is queued (one system call); True when everything left."""
        out = self._out
        if not out or not self.connected:
            return not out
        try:
            sent = self.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return False
        self.tx_bytes += sent
        if sent == len(out):
            self.tx_packets += self._out_packets
            self._out_packets = 0
            out.clear()
            return True
        del out[:sent]
        return False

    def close(self) -> None:
        self._out.clear()
        self._partial = b""
        self.sock.close()
