"""2.6 dynamic tls-crypt: what we announce and accept, and the key derivation's XOR."""

from __future__ import annotations

import pytest

from tunnel.protocol.errors import ProtocolError
from tunnel.protocol.messages import (
    IV_PROTO_DYN_TLS_CRYPT,
    OUR_IV_PROTO,
    build_peer_info,
    parse_push_reply,
)
from tunnel.protocol.wrap import PLAIN, TlsCryptWrap
from tunnel.protocol.wrap.dynamic import dynamic_wrap


def test_peer_info_announces_it_only_when_asked() -> None:
    assert f"IV_PROTO={OUR_IV_PROTO}\n" in build_peer_info(ciphers=["AES-256-GCM"], version="1")
    with_dyn = build_peer_info(ciphers=["AES-256-GCM"], version="1", dyn_tls_crypt=True)
    assert f"IV_PROTO={OUR_IV_PROTO | IV_PROTO_DYN_TLS_CRYPT}\n" in with_dyn


def test_pushed_flags() -> None:
    options, more = parse_push_reply("PUSH_REPLY,protocol-flags cc-exit dyn-tls-crypt,peer-id 0")
    assert not more and options.protocol_flags == {"cc-exit", "dyn-tls-crypt"}
    with pytest.raises(ProtocolError):
        parse_push_reply("PUSH_REPLY,protocol-flags cc-exit tls-ekm dyn-tls-crypt")


def test_key_is_the_export_xor_the_configured_key() -> None:
    exported = bytes(range(256))
    configured = bytes([0xFF]) * 256
    plain = dynamic_wrap(exported, PLAIN, server=True)
    mixed = dynamic_wrap(exported, TlsCryptWrap.from_key(configured, server=True), server=True)
    expected_plain = TlsCryptWrap.from_key(exported, server=False)
    expected_mixed = TlsCryptWrap.from_key(bytes(b ^ 0xFF for b in exported), server=False)
    from core import Buffer

    for wrap, peer in ((plain, expected_plain), (mixed, expected_mixed)):
        buf = Buffer(512)
        buf.reset(64)
        buf.append(b"\x20" + bytes(range(1, 9)) + b"\x00" + bytes(4) + b"hello")
        wrap.seal(buf, 1, 100)
        assert peer.open(buf) is not None  # the client direction opens what the server sealed
