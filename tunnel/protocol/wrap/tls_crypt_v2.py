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

from core import Buffer, FrameBuilder
from tunnel.protocol.constants import OPCODE_SHIFT, SESSION_ID_LEN, Opcode
from tunnel.protocol.wrap.base import OP_SID_LEN, ControlWrap, Opened
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
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

# (metadata type, metadata value) -> accepted? The app runs `tls-crypt-v2-verify CMD` here.
MetadataVerifier = Callable[[int, bytes], bool]


def _cut_wkc(buf: Buffer) -> bytes | None:
    """Split the WKc off the end of a V3/WKC_V1 datagram; None if it cannot be located."""
    view = buf.data
    size = len(view)
    if size < OP_SID_LEN + TLS_CRYPT_OVERHEAD + 2:
        return None
    wkc_len = _U16.unpack_from(view, size - 2)[0]
    if not 2 <= wkc_len <= min(MAX_WKC_LEN, size - OP_SID_LEN - TLS_CRYPT_OVERHEAD):
        return None
    wkc = bytes(view[size - wkc_len :])
    buf.truncate(size - wkc_len)
    return wkc


def _as_control_v1(buf: Buffer) -> None:
    """After verification, P_CONTROL_WKC_V1 is a P_CONTROL_V1 for everything above (ssl.c)."""
    view = buf.data
    if view[0] >> OPCODE_SHIFT == _WKC:
        view[0] = (_CONTROL << OPCODE_SHIFT) | (view[0] & 0x07)


class _PeerWrap(TlsCryptWrap):
    """The server's wrap for one client once its key is known: tls-crypt with Kc; a resent
    WKc (a retransmitted WKC_V1) is ignored, as stock does once the key is set up."""

    name = "tls-crypt-v2"

    def __init__(self, client_key: bytes, metadata: bytes) -> None:
        super().__init__(direction_keys(client_key, 0))
        self.metadata = metadata
        self.original_key = client_key

    def open(self, buf: Buffer) -> Opened | None:
        view = buf.data
        if view and view[0] >> OPCODE_SHIFT in (_V3, _WKC) and _cut_wkc(buf) is None:
            return None
        opened = super().open(buf)
        if opened is not None:
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
        view = buf.data
        if len(view) < OP_SID_LEN or view[0] >> OPCODE_SHIFT not in (_V3, _WKC):
            # Stock: "TLS Error: could not determine wrapping" - v2 requires some wrapping.
            return None
        opcode = view[0] >> OPCODE_SHIFT
        wkc = _cut_wkc(buf)
        if wkc is None:
            return None
        unwrapped = unwrap_client_key(self.server_key, wkc)
        if unwrapped is None:
            return None  # a client key made for another server key, or garbage
        client_key, metadata = unwrapped
        peer = _PeerWrap(client_key, metadata)
        opened = TlsCryptWrap.open(peer, buf)
        if opened is None:
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
        view = buf.data
        opcode = view[0] >> OPCODE_SHIFT
        append = opcode == _V3
        if self.resend_wkc and opcode == _CONTROL and _first_message(view):
            view[0] = (_WKC << OPCODE_SHIFT) | (view[0] & 0x07)
            append = True
        super().seal(buf, packet_id, timestamp)
        if append:
            buf.append(self.client_key.wkc)

    def open(self, buf: Buffer) -> Opened | None:
        opened = super().open(buf)
        if opened is None or self.resend_wkc:
            return opened
        view = buf.data
        if view[0] >> OPCODE_SHIFT == _SERVER_RESET and _asks_for_wkc(view):
            return Opened(opened.packet_id, opened.timestamp, self._resend_variant())
        return opened


def _message_offset(view: memoryview) -> int | None:
    """Where the message pid of a plain non-ACK control packet is, or None if it is short."""
    if len(view) < OP_SID_LEN + 1:
        return None
    n_acks = view[OP_SID_LEN]
    at = OP_SID_LEN + 1 + 4 * n_acks + (SESSION_ID_LEN if n_acks else 0)
    return at if len(view) >= at + 4 else None


def _first_message(view: memoryview) -> bool:
    """key_id 0, message pid 1: the packet stock sends as P_CONTROL_WKC_V1 when asked."""
    at = _message_offset(view)
    return at is not None and view[0] & 0x07 == 0 and _U32.unpack_from(view, at)[0] == 1


def _asks_for_wkc(view: memoryview) -> bool:
    """The server reset's payload holds the early-negotiation TLV with RESEND_WKC."""
    at = _message_offset(view)
    if at is None:
        return False
    pos, end = at + 4, len(view)
    while pos + 4 <= end:
        kind, length = _U16.unpack_from(view, pos)[0], _U16.unpack_from(view, pos + 2)[0]
        pos += 4
        if pos + length > end:
            return False
        if kind == TLV_TYPE_EARLY_NEG_FLAGS and length == 2:
            return bool(_U16.unpack_from(view, pos)[0] & EARLY_NEG_FLAG_RESEND_WKC)
        pos += length
    return False
