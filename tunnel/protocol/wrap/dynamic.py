"""2.6's dynamic tls-crypt: renegotiations (key_id > 0) wrapped with a key from the first
TLS session (`tls_crypt.c: tls_session_generate_dynamic_tls_crypt_key()`,
`ssl_pkt.h: tls_session_get_tls_wrap()`).

Both peers must announce it (IV_PROTO_DYN_TLS_CRYPT in the client's peer-info, answered by
`protocol-flags dyn-tls-crypt` in the push). The key2 is 256 bytes of the RFC 5705 exporter
with label "EXPORTER-OpenVPN-dynamic-tls-crypt" on the key_id 0 session, XORed with the
configured wrap's key2 if there is one (tls-auth, tls-crypt, tls-crypt-v2's client key); it is
used as a tls-crypt key (server direction 0, client 1) with its own packet-ids and replay window.
Even without any configured wrap the renegotiations are then encrypted.
"""

from __future__ import annotations

from tunnel.protocol.wrap.base import ControlWrap
from tunnel.protocol.wrap.keyfile import KEY2_LEN
from tunnel.protocol.wrap.tls_crypt import TlsCryptWrap

__all__ = ["DYNAMIC_TLS_CRYPT_LABEL", "dynamic_wrap"]

DYNAMIC_TLS_CRYPT_LABEL = b"EXPORTER-OpenVPN-dynamic-tls-crypt"


def dynamic_wrap(exported: bytes, base: ControlWrap, *, server: bool) -> TlsCryptWrap:
    """The renegotiation wrap from the exporter's 256 bytes and the configured wrap."""
    if len(exported) != KEY2_LEN:
        raise ValueError(f"the dynamic tls-crypt key is {KEY2_LEN} bytes")
    key = exported
    if base.original_key is not None:
        key = bytes(a ^ b for a, b in zip(exported, base.original_key, strict=True))
    wrap = TlsCryptWrap.from_key(key, server=server)
    wrap.name = "dynamic tls-crypt"
    wrap.original_key = None
    return wrap
