"""Compression framing of data payloads, as OpenVPN 2.6/2.7 puts it on the wire.

We never compress (stock 2.7 no longer does either; 2.6 only with `allow-compression yes`), but
a compression option changes the framing of every data payload, and a peer may still send
compressed packets, which we decompress when the configuration permits it (`decompress`).

Kinds (`comp.h`, `compstub.c`, `comp-lz4.c`, `lzo.c`) and what we send:

    lzo        comp-lzo [yes|adaptive], compress lzo   send 0xFA payload;  0x66 = LZO1X
    stub       comp-lzo no                             send 0xFA payload;  0x66 refused
    swap-stub  compress, compress stub                 send 0xFB payload[1:] payload[0]
    lz4        compress lz4                            as swap-stub;       0x69 (swapped) = LZ4
    stub-v2    compress stub-v2                        send payload as is (0x50 0x00 in front
                                                       when it starts with 0x50); 0x50 0x01 refused
    lz4-v2     compress lz4-v2                         as stub-v2;         0x50 0x01 = LZ4 block

"Swap": the first payload byte moves to the end and the framing byte takes its place, so the
IP header stays aligned. A stub kind refuses a compressed packet as stock's stub does; so does
any kind when `decompress` is False. Every refusal is counted (`refused`, `malformed`).

Memory: framing and unframing are in place (a byte of headroom, two for v2, one of tailroom for
swap). Decompression is not: the packet is rare (only a peer configured to compress sends it)
and the libraries (`lz4`, `python-lzo`) return new bytes, which are copied back into the buffer.
"""

from __future__ import annotations

from typing import Final

from core import BoundsError, Buffer, FrameBuilder

__all__ = [
    "COMPRESSION",
    "COMPRESSION_KINDS",
    "COMPRESSION_V2",
    "COMP_MAX_OVERHEAD",
    "NON_STUB_KINDS",
    "Compression",
    "compression_kind",
    "register_compression",
]

COMPRESSION: Final = "compression"
"""The registration of a v1 framing (one byte: a prefix, or the swapped byte)."""
COMPRESSION_V2: Final = "compression-v2"
"""The registration of a v2 framing: two bytes only for a payload that starts like its
indicator (never an IP packet), so stock's MSS leaves it out (mtu.c:
frame_calculate_payload_overhead), where a buffer must still have room for it."""
COMPRESSION_KINDS: Final = ("lzo", "stub", "swap-stub", "lz4", "stub-v2", "lz4-v2")
NON_STUB_KINDS: Final = frozenset({"lzo", "lz4", "lz4-v2"})
"""Kinds that can carry compressed packets (the others are stubs: framing only)."""

LZO_COMPRESS_BYTE: Final = 0x66
LZ4_COMPRESS_BYTE: Final = 0x69
NO_COMPRESS_BYTE: Final = 0xFA
NO_COMPRESS_BYTE_SWAP: Final = 0xFB
V2_INDICATOR: Final = 0x50
V2_UNCOMPRESSED: Final = 0x00
V2_LZ4: Final = 0x01
V2_LZO: Final = 0x02

_PREFIX = {"lzo": 1, "stub": 1, "swap-stub": 1, "lz4": 1, "stub-v2": 2, "lz4-v2": 2}
COMP_MAX_OVERHEAD: Final = max(_PREFIX.values())
"""The most bytes any framing adds to a payload on the wire."""
_V2_ESCAPE: Final = bytes([V2_INDICATOR, V2_UNCOMPRESSED])
_DECOMPRESSED_HEADROOM: Final = 16


def compression_kind(option: str, arg: str | None) -> str | None:
    """The kind that `comp-lzo [ARG]` / `compress [ARG]` selects (options.c); ValueError if
    the argument is not one stock accepts. `compress migrate` is refused: it is a server-side
    scheme that pushes framing per client, which we do not implement."""
    if option == "comp-lzo":
        if arg in (None, "yes", "adaptive"):
            return "lzo"
        if arg == "no":
            return "stub"
        raise ValueError(f"bad comp-lzo option: {arg} -- must be 'yes', 'no', or 'adaptive'")
    if option == "compress":
        kinds = {None: "swap-stub", "stub": "swap-stub", "stub-v2": "stub-v2", "lzo": "lzo",
                 "lz4": "lz4", "lz4-v2": "lz4-v2"}
        if arg in kinds:
            return kinds[arg]
        if arg == "migrate":
            raise ValueError("'compress migrate' is not supported")
        raise ValueError(f"bad comp option: {arg}")
    raise ValueError(f"{option!r} is not a compression option")


def register_compression(builder: FrameBuilder, kind: str | None) -> None:
    """The framing's geometry: its prefix bytes (headroom) and the swap byte (expansion).

    `kind="any"`: room for whichever framing a server may push (a client's frame).
    """
    if kind is None:
        return
    if kind == "any":
        builder.reserve(COMPRESSION, headroom=max(_PREFIX.values()), expansion=1)
        return
    if kind in ("stub-v2", "lz4-v2"):
        builder.reserve(COMPRESSION_V2, headroom=_PREFIX[kind])
        return
    swap = kind in ("swap-stub", "lz4")
    builder.reserve(COMPRESSION, headroom=0 if swap else _PREFIX[kind], expansion=int(swap))


def _lz4_decompress(data: memoryview, limit: int) -> bytes:
    import lz4.block  # type: ignore[import-untyped,unused-ignore]  # only when a peer compresses

    out: bytes = lz4.block.decompress(bytes(data), uncompressed_size=limit)
    return out


def _lzo_decompress(data: memoryview, limit: int) -> bytes:
    import lzo  # type: ignore[import-not-found,unused-ignore]  # python-lzo

    out: bytes = lzo.decompress(bytes(data), False, limit)
    return out


class Compression:
    """One session's framing: `frame` before sealing, `unframe` after opening."""

    __slots__ = (
        "_swap",
        "_v2",
        "decompress",
        "decompressed",
        "kind",
        "limit",
        "malformed",
        "overhead",
        "refused",
    )

    def __init__(self, kind: str, *, decompress: bool, limit: int) -> None:
        if kind not in COMPRESSION_KINDS:
            raise ValueError(f"unknown compression kind {kind!r}")
        self.kind = kind
        self.decompress = decompress and kind in NON_STUB_KINDS
        self.limit = limit  # the largest payload a decompressed packet may have
        self.overhead = _PREFIX[kind]  # worst-case bytes on the wire
        self._swap = kind in ("swap-stub", "lz4")
        self._v2 = kind in ("stub-v2", "lz4-v2")
        self.refused = 0  # compressed packets we may not (or cannot) decompress
        self.malformed = 0  # a framing byte that no peer of this kind sends
        self.decompressed = 0

    def frame(self, buf: Buffer) -> None:
        """Add the "not compressed" framing in place (never compresses)."""
        if len(buf) == 0:
            return  # stock frames nothing for an empty payload
        if self._v2:
            if buf.data[0] == V2_INDICATOR:
                buf.prepend(_V2_ESCAPE)
        elif self._swap:
            data = buf.data
            first = data[0]
            buf.append_u8(first)
            buf.data[0] = NO_COMPRESS_BYTE_SWAP
        else:
            buf.prepend_u8(NO_COMPRESS_BYTE)

    def unframe(self, buf: Buffer) -> bool:
        """Strip the framing in place (decompressing if allowed); False: drop the packet."""
        size = len(buf)
        if size == 0:
            return True
        data = buf.data
        head = data[0]
        if self._v2:
            if head != V2_INDICATOR:
                return True
            if size < 2:
                self.malformed += 1
                return False
            second = data[1]
            if second == V2_UNCOMPRESSED:
                buf.advance(2)
                return True
            if second == V2_LZ4 and self.kind == "lz4-v2":
                return self._decompressed(buf, 2, _lz4_decompress)
            if second in (V2_LZ4, V2_LZO):
                self.refused += 1
                return False
            self.malformed += 1
            return False
        if self._swap:
            # Undo the swap first: the last byte goes back to the front (comp-lz4.c).
            data[0] = data[size - 1]
            buf.truncate(size - 1)
            if head == NO_COMPRESS_BYTE_SWAP:
                return True
            if head == LZ4_COMPRESS_BYTE:
                if self.kind == "lz4":
                    return self._decompressed(buf, 0, _lz4_decompress)
                self.refused += 1
                return False
            self.malformed += 1
            return False
        if head == NO_COMPRESS_BYTE:
            buf.advance(1)
            return True
        if head == LZO_COMPRESS_BYTE:
            if self.kind == "lzo":
                return self._decompressed(buf, 1, _lzo_decompress)
            self.refused += 1
            return False
        self.malformed += 1
        return False

    def _decompressed(self, buf: Buffer, skip: int, decompress: object) -> bool:
        if not self.decompress:
            self.refused += 1
            return False
        try:
            out = decompress(buf.data[skip:], self.limit)  # type: ignore[operator]
        except ImportError:
            self.refused += 1  # the library is not installed: counted, never fatal
            return False
        except Exception:
            self.malformed += 1
            return False
        if not out or len(out) > self.limit:
            self.malformed += 1
            return False
        # Back to the buffer's start: the payload grew past what follows the data header. A
        # little headroom stays for the TUN's virtio-net header (tunnel/io/offload.py).
        buf.reset(min(buf.offset, _DECOMPRESSED_HEADROOM))
        try:
            buf.append(out)
        except BoundsError:
            self.malformed += 1
            return False
        self.decompressed += 1
        return True
