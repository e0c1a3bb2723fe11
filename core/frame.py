"""`Frame`: the maximum packet geometry, built from what each data-channel module registers.

As in OpenVPN's `struct frame`, every module that adds bytes to a packet says so, by name, in one
place (`FrameBuilder.reserve`), and buffer sizes and the link MTU are derived from that, never
from literals scattered through the code. The vocabulary:

- *headroom*: bytes a module prepends in front of the payload (P_DATA_V2 header, packet-id,
  AEAD tag). They go on the wire.
- *expansion*: bytes a module may grow the payload by (padding, compression worst case). They go
  on the wire too.
- *tailroom*: working space a module needs after the payload that is *not* sent as such (e.g.
  room for `cryptography`'s `encrypt_into` to write `ciphertext||tag` before the tag is moved).
- *device headroom*: bytes a local device puts in front of a packet that are never sent (the
  TUN's 10-byte virtio-net header). A device read lands them just in front of the payload, and
  they are consumed before any wire header is prepended into the same bytes; so the frame's
  headroom holds the larger of the two sums, not their total, and `overhead`/`link_mtu` never
  count them.

Derived geometry:

- `overhead = sum(headroom) + sum(expansion)`: what a packet grows by on the wire, exact;
- `link_mtu = tun_mtu + overhead`: the largest UDP payload we send;
- `payload_size = tun_mtu + sum(expansion)`: the largest payload a buffer must hold;
- `headroom = round_up(max(sum(headroom), sum(device_headroom)), HEADROOM_ALIGN)`: where a TUN
  read's packet lands in a block (a virtio-net header, if any, just in front of it);
- `buffer_size = round_up(headroom + payload_size + tailroom, BLOCK_ALIGN)`: one pool block.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import FrameError

HEADROOM_ALIGN = 8
"""Payload start alignment. OpenVPN aligns to 4 (PAYLOAD_ALIGN in mtu.h, for 32-bit loads of IP
headers); we use 8 so the payload starts on a 64-bit word of a 64-byte aligned block, which keeps
the C code below us (memcpy, AES-GCM in OpenSSL, the kernel's copies) on its aligned paths. It
costs at most 7 bytes of headroom per block."""

BLOCK_ALIGN = 64
"""Block size granularity: blocks of a pool slab start on cache-line boundaries, so two packets
handled at once never share a cache line."""

MIN_TUN_MTU = 576
"""Every IPv4 host must accept 576-byte datagrams (RFC 791, RFC 1122), so a tunnel that carries
less cannot promise to deliver IPv4 at all. (OpenVPN's TUN_MTU_MIN is 100, which only protects its
own arithmetic.) A tunnel carrying IPv6 needs 1280 (RFC 8200); see `IPV6_MIN_MTU`."""

IPV6_MIN_MTU = 1280
"""The IPv6 minimum link MTU (RFC 8200 section 5), for whoever configures IPv6 over the tunnel."""

MAX_LINK_MTU = 65535
"""The UDP length field's limit: no datagram, hence no link MTU, can be larger."""


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True, slots=True)
class Registration:
    """What one data-channel module adds to a packet (see the module docstring)."""

    name: str
    headroom: int
    tailroom: int
    expansion: int
    device_headroom: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """An immutable, finalized packet geometry. Build it with `FrameBuilder`.

    There is no merge of a local and a remote frame (an earlier `Frame.negotiate` had no
    caller): OpenVPN peers never exchange frames. What is negotiated is a cipher and a framing
    (and a pushed tun-mtu), and the geometry that follows is built afresh from the registrations
    of what was chosen, as stock's `frame_calculate_dynamic` does after the push
    (`tunnel/protocol/geometry.data_frame`)."""

    tun_mtu: int
    headroom: int
    tailroom: int
    payload_size: int
    buffer_size: int
    link_mtu: int
    overhead: int
    registrations: tuple[Registration, ...]
    link_mtu_limit: int | None = None
    """The link MTU cap the frame was built under (None: no cap)."""
    device_headroom: int = 0
    """Bytes registered in front of the payload for a local device, never sent (see above)."""

    def describe(self) -> str:
        """A multi-line account of where every byte goes (for logs and `--show-frame`)."""
        lines = [
            f"tun_mtu={self.tun_mtu} link_mtu={self.link_mtu} overhead={self.overhead} "
            f"payload_size={self.payload_size} headroom={self.headroom} "
            f"tailroom={self.tailroom} device_headroom={self.device_headroom} "
            f"buffer_size={self.buffer_size}"
        ]
        lines += [
            f"  {reg.name}: headroom={reg.headroom} tailroom={reg.tailroom} "
            f"expansion={reg.expansion}"
            + (f" device_headroom={reg.device_headroom}" if reg.device_headroom else "")
            for reg in self.registrations
        ]
        return "\n".join(lines)


class FrameBuilder:
    """Collects registrations, then `finalize()` computes the `Frame`.

    `link_mtu`, when given, is a cap on the UDP payload (a path MTU): `finalize` lowers the tun
    MTU so that `tun_mtu + overhead` fits under it, and fails if that leaves less than
    `MIN_TUN_MTU`. Whoever configures the TUN device must use the frame's `tun_mtu`.
    """

    __slots__ = ("_link_mtu", "_registrations", "_tun_mtu")

    def __init__(self, tun_mtu: int = 1500, link_mtu: int | None = None) -> None:
        if not MIN_TUN_MTU <= tun_mtu <= MAX_LINK_MTU:
            raise FrameError(f"tun_mtu {tun_mtu} outside [{MIN_TUN_MTU}, {MAX_LINK_MTU}]")
        if link_mtu is not None and not MIN_TUN_MTU <= link_mtu <= MAX_LINK_MTU:
            raise FrameError(f"link_mtu {link_mtu} outside [{MIN_TUN_MTU}, {MAX_LINK_MTU}]")
        self._tun_mtu = tun_mtu
        self._link_mtu = link_mtu
        self._registrations: dict[str, Registration] = {}

    def reserve(
        self,
        name: str,
        *,
        headroom: int = 0,
        tailroom: int = 0,
        expansion: int = 0,
        device_headroom: int = 0,
    ) -> None:
        """Register what module `name` adds to every packet; each name registers once.

        `device_headroom`: bytes a local device reads/writes in front of the packet that are
        never sent (the TUN's virtio-net header); see the module docstring."""
        if name in self._registrations:
            raise FrameError(f"{name!r} already registered its geometry")
        if headroom < 0 or tailroom < 0 or expansion < 0 or device_headroom < 0:
            raise FrameError(
                f"{name!r}: negative geometry (headroom={headroom}, tailroom={tailroom}, "
                f"expansion={expansion}, device_headroom={device_headroom})"
            )
        self._registrations[name] = Registration(
            name, headroom, tailroom, expansion, device_headroom
        )

    def finalize(self) -> Frame:
        regs = tuple(self._registrations.values())
        header_bytes = sum(reg.headroom for reg in regs)
        expansion = sum(reg.expansion for reg in regs)
        tailroom = sum(reg.tailroom for reg in regs)
        device_headroom = sum(reg.device_headroom for reg in regs)
        overhead = header_bytes + expansion  # device headroom is never sent
        tun_mtu = self._tun_mtu
        limit = self._link_mtu
        if limit is not None and tun_mtu + overhead > limit:
            tun_mtu = limit - overhead
            if tun_mtu < MIN_TUN_MTU:
                raise FrameError(
                    f"link_mtu {limit} cannot carry {overhead} bytes of overhead and a tun MTU "
                    f"of at least {MIN_TUN_MTU} (needs link_mtu >= {MIN_TUN_MTU + overhead}); "
                    + ", ".join(f"{r.name}={r.headroom + r.expansion}" for r in regs)
                )
        link_mtu = tun_mtu + overhead
        if link_mtu > MAX_LINK_MTU:
            raise FrameError(
                f"link_mtu {link_mtu} (tun_mtu {tun_mtu} + overhead {overhead}) "
                f"exceeds the UDP limit {MAX_LINK_MTU}"
            )
        # The device's bytes and the wire headers share the room in front of the payload at
        # different times (the first are consumed before the second are prepended).
        headroom = _round_up(max(header_bytes, device_headroom), HEADROOM_ALIGN)
        payload_size = tun_mtu + expansion
        return Frame(
            tun_mtu=tun_mtu,
            headroom=headroom,
            tailroom=tailroom,
            payload_size=payload_size,
            buffer_size=_round_up(headroom + payload_size + tailroom, BLOCK_ALIGN),
            link_mtu=link_mtu,
            overhead=overhead,
            registrations=regs,
            link_mtu_limit=limit,
            device_headroom=device_headroom,
        )
