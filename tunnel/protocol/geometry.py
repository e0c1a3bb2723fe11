"""A link's geometry beyond our buffers: what the MSS clamp and the control packet limit
derive from.

Two parts, as in stock (mtu.c, mss.c):

- the *outer headers* the kernel puts around every datagram we send (IP + UDP or TCP): not in
  any buffer of ours, so not in the `Frame`; stock's `datagram_overhead()`;
- the *data frame*: the `Frame` of what was negotiated (the link's own framing, e.g. TCP's
  length prefix, the chosen cipher's words and the framing of the compression in use), built
  from the same registrations as the pool's frame; its `overhead` is exactly what a data
  packet adds on the wire (stock's `frame_calculate_dynamic` after the push).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from core import Frame, FrameBuilder
from tunnel.protocol.compress import register_compression
from tunnel.protocol.constants import IPV4_HEADER, IPV6_HEADER, TCP_HEADER, UDP_HEADER
from tunnel.protocol.datacipher import DEFAULT_AUTH, register_data_cipher

__all__ = [
    "IPV4_HEADER", "IPV6_HEADER", "PRE_NEGOTIATION_CIPHER", "TCP_HEADER", "UDP_HEADER",
    "LinkFraming", "data_frame", "framing_overhead", "outer_overhead",
]

PRE_NEGOTIATION_CIPHER: Final = "AES-256-GCM"
"""The geometry assumed before a cipher is chosen: any AEAD (P_DATA_V2 + packet-id + tag)."""

LinkFraming = Callable[[FrameBuilder], None]
"""A transport's registration of what it adds to each packet (TCP: the 2-byte length)."""


def outer_overhead(proto: str) -> int:
    """IP + UDP/TCP header bytes around each datagram of a link whose options-string proto word
    is `proto` (UDPv4, UDPv6, TCPv4_CLIENT, TCPv6_SERVER, ...)."""
    ip = IPV6_HEADER if proto[3:5] == "v6" else IPV4_HEADER
    return ip + (TCP_HEADER if proto.startswith("TCP") else UDP_HEADER)


def data_frame(
    cipher: str | None,
    *,
    auth: str = DEFAULT_AUTH,
    compression: str | None = None,
    link_framing: LinkFraming | None = None,
) -> Frame:
    """The data channel's geometry once `cipher` (None: not yet negotiated) and `compression`
    (a compress.py kind, or None) are in use on a link with `link_framing`."""
    builder = FrameBuilder()
    if link_framing is not None:
        link_framing(builder)
    register_data_cipher(builder, cipher or PRE_NEGOTIATION_CIPHER, auth)
    register_compression(builder, compression)
    return builder.finalize()


def framing_overhead(link_framing: LinkFraming | None) -> int:
    """Bytes the link's framing alone adds to each packet (control packets get it too)."""
    if link_framing is None:
        return 0
    builder = FrameBuilder()
    link_framing(builder)
    return builder.finalize().overhead
