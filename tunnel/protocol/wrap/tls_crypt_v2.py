"""`tls-crypt-v2`: tls-crypt with a key per client, which the client carries to the server
wrapped in the server key (`tls_crypt.c`, `ssl_pkt.c: tls_wrap_control()`,
`read_control_auth()`, `mudp.c: do_pre_decrypt_check()`).

```
P_CONTROL_HARD_RESET_CLIENT_V3 / P_CONTROL_WKC_V1:  tls-crypt packet (with Kc) | WKc
```

WKc ends in its own length, so the server finds it from the end, unwraps Kc with the server
key (`v2keys.unwrap_client_key`) and opens the tls-crypt part with Kc - all without state. A
2.6 client starts its packet-ids at 0x0f000001 ("early negotiation"); the server then answers
statelessly with the HMAC cookie and a TLV asking for WKc again (EARLY_NEG_FLAG_RESEND_WKC), and
the client sends its first P_CONTROL_V1 (message pid 1) as P_CONTROL_WKC_V1. So the server
keeps no state until that packet proves the address - as with tls-auth and tls-crypt. A client
without early negotiation is refused (stock's `--tls-crypt-v2-force-cookie` behaviour).

The key's metadata is checked (`tls-crypt-v2-max-age`, `tls-crypt-v2-verify`) by `admit`, when
the session is about to be created, as stock does when it processes the packet for real.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from core import BoundsError, Buffer, FrameBuilder
from tunnel.protocol.codec import skip_to_payload
from tunnel.protocol.constants import KEY_ID_MASK, OPCODE_SHIFT, Opcode
from tunnel.protocol.wrap.base import OP_SID_LEN, ControlWrap, Opened, check_room
from tunnel.protocol.wrap.keyfile import direction_keys
from tunnel.protocol.wrap.tls_crypt import TLS_CRYPT_OVERHEAD, TlsCryptWrap
from tunnel.protocol.wrap.v2keys import (
    MAX_WKC_LEN,
    ClientKey,
    ServerKey,
    metadata_time,
    unwrap_client_key,
)

__all__ = [
    "EARLY_NEG_START",
    "EARLY_NEG_TLV",
    "MetadataVerifier",
    "TlsCryptV2ClientWrap",
    "TlsCryptV2ServerWrap",
]

EARLY_NEG_MASK = 0xFF000000
EARLY_NEG_START = 0x0F000000
TLV_TYPE_EARLY_NEG_FLAGS = 0x0001
EARLY_NEG_FLAG_RESEND_WKC = 0x0001
# The payload of our stateless HARD_RESET_SERVER_V2 to an early-negotiating client.
EARLY_NEG_TLV = struct.pack("!HHH", TLV_TYPE_EARLY_NEG_FLAGS, 2, EARLY_NEG_FLAG_RESEND_WKC)
_V3 = int(Opcode.P_CONTROL_HARD_RESET_CLIENT_V3)
_WKC = int(Opcode.P_CONTROL_WKC_V1)
_CONTROL = int(Opcode.P_CONTROL_V1)
_SERVER_RESET = int(Opcode.P_CONTROL_HARD_RESET_SERVER_V2)

# (metadata type, metadata value) -> accepted? The app runs `tls-crypt-v2-verify CMD` here.
MetadataVerifier = Callable[[int, bytes], bool]


def _cut_wkc(buf: Buffer) -> bytes | None:
    """Split the WKc off the end of a V3/WKC_V1 datagram; None if it cannot be located.

    WKc ends in its own u16 length, so it is found from the tail (the one field a Buffer
    cannot read from the front); ``buf.inc_len(len(wkc))`` puts it back."""
    size = len(buf)
    if size < OP_SID_LEN + TLS_CRYPT_OVERHEAD + 2:
        return None
    view = buf.data
    wkc_len = int.from_bytes(view[size - 2 :], "big")
    if not 2 <= wkc_len <= min(MAX_WKC_LEN, size - OP_SID_LEN - TLS_CRYPT_OVERHEAD):
        return None
    wkc = view[size - wkc_len :].tobytes()
    buf.truncate(size - wkc_len)
    return wkc


def _set_opcode(buf: Buffer, opcode: int) -> None:
    """Rewrite the opcode of the packet in ``buf``, keeping its key_id (read, then prepend)."""
    first = buf.read_u8()
    buf.prepend_u8((opcode << OPCODE_SHIFT) | (first & KEY_ID_MASK))


def _as_control_v1(buf: Buffer) -> None:
    """After verification, P_CONTROL_WKC_V1 is a P_CONTROL_V1 for everything above (ssl.c)."""
    if buf.peek_u8() >> OPCODE_SHIFT == _WKC:
        _set_opcode(buf, _CONTROL)


def _opcode(buf: Buffer) -> int | None:
    return buf.peek_u8() >> OPCODE_SHIFT if len(buf) else None


class _PeerWrap(TlsCryptWrap):
    """The server's wrap for one client once its key is known: tls-crypt with Kc; a resent
    WKc (a retransmitted WKC_V1) is ignored, as stock does once the key is set up."""

    name = "tls-crypt-v2"

    def __init__(self, client_key: bytes, metadata: bytes) -> None:
        super().__init__(direction_keys(client_key, 0))
        self.metadata = metadata
        self.original_key = client_key

    def open(self, buf: Buffer) -> Opened | None:
        wkc = b""
        if _opcode(buf) in (_V3, _WKC):
            cut = _cut_wkc(buf)
            if cut is None:
                return None
            wkc = cut
        opened = super().open(buf)
        if opened is None:
            buf.inc_len(len(wkc))  # as it came
            return None
        _as_control_v1(buf)
        return opened


class TlsCryptV2ServerWrap(ControlWrap):
    """The server side: unwraps each client's key from its V3 reset or WKC_V1 packet."""

    name = "tls-crypt-v2"
    overhead = TLS_CRYPT_OVERHEAD

    def __init__(self, server_key: ServerKey, *, max_age_days: int = 0,
                 verifier: MetadataVerifier | None = None) -> None:
        self.server_key = server_key
        self.max_age_days = max_age_days
        self.verifier = verifier

    @property
    def reserved(self) -> int:
        return TLS_CRYPT_OVERHEAD + 16

    def seal(self, buf: Buffer, packet_id: int, timestamp: int) -> None:
        raise RuntimeError("tls-crypt-v2: the server seals with the client's own key")

    def open(self, buf: Buffer) -> Opened | None:
        opcode = _opcode(buf)
        if len(buf) < OP_SID_LEN or opcode not in (_V3, _WKC):
            # Stock: "TLS Error: could not determine wrapping" - v2 requires some wrapping.
            return None
        wkc = _cut_wkc(buf)
        if wkc is None:
            return None
        unwrapped = unwrap_client_key(self.server_key, wkc)
        opened = None
        if unwrapped is not None:  # None: a client key made for another server key, or garbage
            client_key, metadata = unwrapped
            peer = _PeerWrap(client_key, metadata)
            opened = TlsCryptWrap.open(peer, buf)
        if opened is None:
            buf.inc_len(len(wkc))  # as it came
            return None
        _as_control_v1(buf)
        early = opcode == _V3 and opened.packet_id & EARLY_NEG_MASK == EARLY_NEG_START
        return Opened(opened.packet_id, opened.timestamp, peer, metadata, early)

    def admit(self, opened: Opened, unix_now: float) -> str | None:
        metadata = opened.metadata
        if metadata is None:
            return "tls-crypt-v2 packet without a client key"
        if self.max_age_days > 0:
            created = metadata_time(metadata)
            if created is None:
                return "tls-crypt-v2 client key has no timestamp (tls-crypt-v2-max-age)"
            if unix_now - created > self.max_age_days * 86400:
                return "tls-crypt-v2 client key is too old (tls-crypt-v2-max-age)"
        if self.verifier is not None and not self.verifier(metadata[0], metadata[1:]):
            return "tls-crypt-v2-verify refused the client key"
        return None


class TlsCryptV2ClientWrap(TlsCryptWrap):
    """The client side: tls-crypt with Kc, WKc appended to the V3 reset and, when the server
    asks for it, to the first P_CONTROL_V1 (sent as P_CONTROL_WKC_V1)."""

    name = "tls-crypt-v2"
    client_reset_opcode = Opcode.P_CONTROL_HARD_RESET_CLIENT_V3
    initial_packet_id = EARLY_NEG_START

    def __init__(self, client_key: ClientKey, *, resend_wkc: bool = False) -> None:
        super().__init__(direction_keys(client_key.key, 1))
        self.original_key = client_key.key
        self.client_key = client_key
        self.resend_wkc = resend_wkc
        self._resending: TlsCryptV2ClientWrap | None = self if resend_wkc else None

    @property
    def reserved(self) -> int:
        # Stock shortens only the packets that carry WKc; we keep every packet short enough
        # to carry it, so a long metadata never pushes a datagram past tls-mtu.
        return TLS_CRYPT_OVERHEAD + 16 + len(self.client_key.wkc)

    def register(self, builder: FrameBuilder) -> None:
        # WKc is appended behind the packet: tailroom of the control frame, sent as is.
        builder.reserve(f"control-wrap {self.name}", headroom=self.overhead,
                        tailroom=len(self.client_key.wkc))

    def _resend_variant(self) -> TlsCryptV2ClientWrap:
        if self._resending is None:
            self._resending = TlsCryptV2ClientWrap(self.client_key, resend_wkc=True)
        return self._resending

    def seal(self, buf: Buffer, packet_id: int, timestamp: int) -> None:
        opcode = _opcode(buf)
        as_wkc = (self.resend_wkc and opcode == _CONTROL and buf.peek_u8() & KEY_ID_MASK == 0
                  and _message_pid(buf) == 1)
        append = as_wkc or opcode == _V3
        # Every bound before anything changes: the tls-crypt header in front, WKc behind.
        check_room(buf, self.overhead)
        if append and buf.tailroom < len(self.client_key.wkc):
            raise BoundsError(f"seal: WKc needs {len(self.client_key.wkc)} bytes of tailroom,"
                              f" {buf.tailroom} there")
        if as_wkc:
            _set_opcode(buf, _WKC)  # before the tag, which covers op|sid
        super().seal(buf, packet_id, timestamp)
        if append:
            buf.append(self.client_key.wkc)

    def open(self, buf: Buffer) -> Opened | None:
        opened = super().open(buf)
        if opened is None or self.resend_wkc:
            return opened
        if _opcode(buf) == _SERVER_RESET and _asks_for_wkc(buf):
            return Opened(opened.packet_id, opened.timestamp, self._resend_variant())
        return opened


def _cursor(buf: Buffer) -> Buffer:
    """A read cursor over the contents of ``buf``: reading it leaves ``buf`` as it is."""
    cursor = Buffer.over(buf.data)
    cursor.inc_len(cursor.capacity)
    return cursor


def _message_pid(buf: Buffer) -> int | None:
    """The message pid of the plain non-ACK control packet in ``buf``; None if it is short."""
    try:
        return skip_to_payload(_cursor(buf))
    except BoundsError:
        return None


def _asks_for_wkc(buf: Buffer) -> bool:
    """The server reset's payload holds the early-negotiation TLV with RESEND_WKC."""
    tlvs = _cursor(buf)
    try:
        skip_to_payload(tlvs)
        while len(tlvs) >= 4:
            kind = tlvs.read_u16()
            value = tlvs.read(tlvs.read_u16())  # a length beyond the packet: BoundsError
            if kind == TLV_TYPE_EARLY_NEG_FLAGS and len(value) == 2:
                return bool(int.from_bytes(value, "big") & EARLY_NEG_FLAG_RESEND_WKC)
    except BoundsError:
        return False
    return False
