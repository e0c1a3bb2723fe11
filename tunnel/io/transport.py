"""The transport seam: what the application needs from whatever moves packets on the link.

Two transports implement it, over the same sans-I/O endpoint (`Client` / `Server`):

- datagram (`tunnel/io/driver.py`, `Driver`): one UDP socket, GSO/GRO batches;
- stream (`tunnel/io/conn_driver.py` and its two roles, `tcp_server.py` and `client_link.py`):
  one connection per peer, OpenVPN's 16-bit length framing (`tunnel/io/stream.py`).

The protocol engine does not know which one runs it: a peer is an address either way (the
datagram's source, or the connection's peer address). What a transport adds to a packet is
registered with the `FrameBuilder` (`register_stream_framing` for TCP's length prefix), and
what it changes in the session's geometry (outer header sizes for MSS, the options string's
proto word) comes from `tunnel/protocol/geometry.py` and `tunnel/app/build.py`. Its run buffers
(GSO/GRO, coalescing, stream scratch) are blocks of its `runs` pool. docs/INTERNALS.md says
how to add another.
"""

from __future__ import annotations

from typing import Protocol

from core import GcArena, RunPool
from tunnel.io.driver import DriverStats
from tunnel.io.faults import CallbackFaults

__all__ = ["Transport"]


class Transport(Protocol):
    arena: GcArena
    runs: RunPool  # the transport's run buffers (GSO/GRO, TUN coalescing, stream scratch)
    faults: CallbackFaults

    @property
    def stats(self) -> DriverStats: ...

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close_endpoint(self) -> None: ...
    def kick(self) -> None: ...  # send/hand out what the endpoint queued outside a callback
