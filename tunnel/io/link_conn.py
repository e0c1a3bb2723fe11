"""A link to one peer, whatever the transport: what the connection-oriented drivers talk to.

`StreamConnection` (tunnel/io/stream.py) is the TCP form; `DatagramConnection` here is a
connected UDP socket with the same methods, so the client driver can walk a list of remotes
that mixes `udp` and `tcp` entries without a second code path. (A client whose remotes are all
UDP keeps the batch-optimised `Driver`.)
"""

from __future__ import annotations

import socket
from typing import Protocol

from core import Buffer
from tunnel.io.stream import LENGTH_PREFIX, MAX_PACKETS_PER_READ, Deliver, StreamConnection

__all__ = ["DatagramConnection", "LinkConnection", "queue_sealed"]


class LinkConnection(Protocol):
    addr: tuple[str, int]
    connected: bool
    closing: bool
    created_at: float
    session_seen: bool
    writer_armed: bool
    tx_dropped: int

    def fileno(self) -> int: ...
    def receive(self, scratch: memoryview, deliver: Deliver) -> bool: ...
    def queue_packet(self, packet: bytes | memoryview) -> bool: ...
    def flush(self) -> bool: ...
    def close(self) -> None: ...

    @property
    def pending(self) -> int: ...


def queue_sealed(conn: LinkConnection, buf: Buffer) -> bool:
    """A sealed data packet: its length goes into the headroom the frame reserved for it."""
    if isinstance(conn, StreamConnection):
        buf.prepend_u16(len(buf))
        return conn.queue(buf.data)
    return conn.queue_packet(buf.data)


class DatagramConnection:
    """A connected UDP socket: one datagram per packet, sent at once (no queue to bound)."""

    def __init__(self, sock: socket.socket, addr: tuple[str, int], now: float) -> None:
        self.sock = sock
        self.addr = addr
        self.connected = True
        self.closing = False
        self.created_at = now
        self.session_seen = False
        self.writer_armed = False
        self.tx_dropped = 0

    @property
    def pending(self) -> int:
        return 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, scratch: memoryview, deliver: Deliver) -> bool:
        recv_into = self.sock.recv_into
        for _ in range(MAX_PACKETS_PER_READ):  # a bounded batch per readiness callback
            try:
                n = recv_into(scratch)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                continue  # ICMP port unreachable surfaces here: the poll timeout moves on
            if n:
                deliver(scratch[:n])
        return True

    def queue_packet(self, packet: bytes | memoryview) -> bool:
        try:
            self.sock.send(packet)
        except OSError:
            self.tx_dropped += 1
            return False
        return True

    def flush(self) -> bool:
        return True

    def close(self) -> None:
        self.sock.close()


_ = LENGTH_PREFIX  # re-exported for callers that size buffers
