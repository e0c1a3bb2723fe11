"""CFB/OFB + HMAC (tunnel/protocol/cfb.py): the wire form stock's openvpn_encrypt_v1 writes
(IV = long-form packet-id then zeros, no packet-id in the plaintext, no padding), decoded
here with the primitives; tampering and replays refused; a whole session over each mode.
Interop with the stock binary in both roles: tests/e2e/test_interop_legacy.py."""

from __future__ import annotations

import hmac
import os
import struct

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB, OFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from core import BufferPool, FrameBuilder
from tunnel.protocol.cfb import STREAM_CIPHERS
from tunnel.protocol.datacipher import make_data_key, register_data_ciphers
from tunnel.protocol.geometry import data_frame
from tunnel.protocol.mssfix import mss_for
from tunnel.protocol.replay import ReplayWindow
from tunnel.protocol.verdicts import TO_TUN

from .harness import Pair

NAMES = sorted(STREAM_CIPHERS)


def _pool(cipher: str) -> BufferPool:
    builder = FrameBuilder()
    register_data_ciphers(builder, [cipher], "SHA256")
    return BufferPool(builder.finalize(), 4)


def _keys(cipher: str) -> tuple[object, object, bytes]:
    key2 = os.urandom(256)
    made = [make_data_key(cipher=cipher, auth="SHA256", key2=key2, is_server=server, key_id=1,
                          replay=ReplayWindow(), wall_time=1_700_000_000)
            for server in (False, True)]
    return made[0], made[1], key2


@pytest.mark.parametrize("cipher", NAMES)
def test_the_wire_form_is_stocks_and_opens_on_the_other_side(cipher: str) -> None:
    client, server, key2 = _keys(cipher)
    pool = _pool(cipher)
    payload = os.urandom(333)
    buf = pool.acquire()
    buf.append(payload)
    client.seal(buf, peer_id=7)  # type: ignore[attr-defined]
    wire = bytes(buf.data)
    key_len, mode = STREAM_CIPHERS[cipher]
    c2s_cipher, c2s_hmac = key2[:key_len], key2[64:64 + 32]
    assert wire[:4] == bytes([(9 << 3) | 1, 0, 0, 7])
    tag, iv, ct = wire[4:36], wire[36:52], wire[52:]
    assert iv == struct.pack(">II", 1, 1_700_000_000) + bytes(8)  # packet-id 1, the time
    assert hmac.compare_digest(tag, hmac.digest(c2s_hmac, iv + ct, "sha256"))
    chosen = CFB(iv) if mode == "CFB" else OFB(iv)
    decryptor = Cipher(algorithms.AES(c2s_cipher), chosen).decryptor()
    assert decryptor.update(ct) + decryptor.finalize() == payload  # no pid, no padding
    rx = pool.acquire()
    rx.append(wire)
    assert server.open(rx, 0.0)  # type: ignore[attr-defined]
    assert bytes(rx.data) == payload
    pool.release(rx)
    rx = pool.acquire()
    rx.append(wire)
    assert not server.open(rx, 0.0)  # type: ignore[attr-defined]  # the same again: a replay
    assert server.replays == 1  # type: ignore[attr-defined]
    pool.release(rx)
    tampered = bytearray(wire)
    tampered[-1] ^= 1
    rx = pool.acquire()
    rx.append(tampered)
    assert not server.open(rx, 0.0)  # type: ignore[attr-defined]
    assert server.auth_failures == 1  # type: ignore[attr-defined]
    for cut in (0, 1, 4, 40, 51):
        rx.truncate(0)
        rx.append(wire[:cut])
        assert not server.open(rx, 0.0)  # type: ignore[attr-defined]
    pool.release(rx)
    pool.release(buf)
    assert pool.stats.in_use == 0


def test_the_mss_is_stocks() -> None:
    # stock 2.6.14, data-ciphers AES-256-CFB, auth SHA1, UDPv4: "mss_fix:1376" at verb 4.
    frame = data_frame("AES-256-CFB", auth="SHA1")
    assert mss_for(1492, frame, outer_overhead=28, inner_ipv6=False) == 1376


@pytest.mark.parametrize("cipher", ["AES-256-CFB", "AES-128-OFB"])
def test_a_session_runs_over_the_mode(cipher: str) -> None:
    pair = Pair(client_ciphers=(cipher,), server_ciphers=(cipher,))
    pair.connect()
    session = pair.client.session
    assert session is not None and session.cipher == cipher
    for n in (0, 1, 100, 1400):
        sealed = pair.client_sends(os.urandom(n))
        assert sealed is not None and pair.to_server(sealed) == TO_TUN
    sealed = pair.server_sends(b"down")
    assert sealed is not None and pair.to_client(sealed) == TO_TUN
