"""CbcHmacKey: OpenVPN's CBC + HMAC data channel, against packets from the stock binary."""

from __future__ import annotations

import hmac
import itertools
import os
import tracemalloc
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core import BoundsError, Buffer, BufferPool, Frame, FrameBuilder
from tests.protocol.vectors import LIVE
from tests.protocol.vectors_cbc import ALL, CbcVector
from tunnel.protocol.cbc import (
    CBC_CIPHERS,
    HMAC_DIGESTS,
    CbcDirectionKey,
    CbcHmacKey,
    cbc_overhead,
    split_key2_cbc,
)
from tunnel.protocol.constants import PING_MAGIC
from tunnel.protocol.datacipher import data_overhead, make_data_key, register_data_ciphers
from tunnel.protocol.prf import derive_key2
from tunnel.protocol.replay import ReplayWindow

VECTORS = [pytest.param(v, id=f"{v.cipher}-{v.auth}") for v in ALL]


MIXED = ("AES-256-GCM", "AES-256-CBC")
CBC_ONLY = ("AES-256-CBC",)


def cbc_frame(auth: str = "SHA512", tun_mtu: int = 1500,
              ciphers: tuple[str, ...] = MIXED) -> Frame:
    builder = FrameBuilder(tun_mtu=tun_mtu)
    register_data_ciphers(builder, ciphers, auth)
    return builder.finalize()


@pytest.fixture(params=[MIXED, CBC_ONLY], ids=["with-aead", "cbc-only"])
def pool(request: pytest.FixtureRequest) -> Iterator[BufferPool]:
    p = BufferPool(cbc_frame(ciphers=request.param), 8)
    yield p
    assert p.stats.in_use == 0, "a test leaked a pool buffer"


def stock_keys(v: CbcVector, *, server: bool) -> CbcHmacKey:
    """The key object of one side of the captured run, from the keys stock logged."""
    c2s = CbcDirectionKey(v.c2s_cipher_key, v.c2s_hmac_key)
    s2c = CbcDirectionKey(v.s2c_cipher_key, v.s2c_hmac_key)
    encrypt, decrypt = (s2c, c2s) if server else (c2s, s2c)
    return CbcHmacKey(key_id=0, cipher=v.cipher, auth=v.auth, encrypt=encrypt, decrypt=decrypt,
                      replay=ReplayWindow())


def received(pool: BufferPool, datagram: bytes) -> Buffer:
    """A datagram placed as the driver places it: at the frame's headroom."""
    buf = pool.acquire()
    buf.append(datagram)
    return buf


# -- the stock binary's packets --------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS)
def test_opens_what_stock_sent_in_both_directions(pool: BufferPool, v: CbcVector) -> None:
    for server, datagram, iv, prefix, pid in (
        (True, v.to_server, v.to_server_iv, v.to_server_plain_prefix, v.to_server_pid),
        (False, v.to_client, v.to_client_iv, v.to_client_plain_prefix, v.to_client_pid),
    ):
        # The layout stock logged: op/peer-id, HMAC, the logged IV, ciphertext.
        at = 4 + HMAC_DIGESTS[v.auth]
        assert datagram[at : at + 16] == iv
        key = stock_keys(v, server=server)
        buf = received(pool, datagram)
        try:
            assert key.open(buf, now=0.0), key
            plain = bytes(buf.data)
        finally:
            pool.release(buf)
        assert plain.startswith(prefix)  # an IPv4 ICMP packet, as stock logged it
        assert len(plain) == int.from_bytes(plain[2:4], "big")  # its total length: no padding
        assert key.opened == 1
        assert not key.replay.accept(pid, 0.0)  # the packet-id stock logged was the one read


@pytest.mark.parametrize("v", VECTORS)
def test_stock_can_read_what_we_seal(pool: BufferPool, v: CbcVector) -> None:
    """Our datagram decoded the way openvpn_decrypt_v1() does it, with stock's keys."""
    ours = stock_keys(v, server=False)
    payload = os.urandom(77)
    buf = pool.acquire()
    buf.append(payload)
    try:
        ours.seal(buf, peer_id=0)
        wire = bytes(buf.data)
    finally:
        pool.release(buf)
    size = HMAC_DIGESTS[v.auth]
    assert wire[:4] == bytes([0x48, 0, 0, 0])
    tag, iv, ct = wire[4 : 4 + size], wire[4 + size : 20 + size], wire[20 + size :]
    assert hmac.compare_digest(tag, hmac.digest(v.c2s_hmac_key, iv + ct, v.auth.lower()))
    decryptor = Cipher(algorithms.AES(v.c2s_cipher_key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(ct) + decryptor.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 16 and plain[-pad:] == bytes([pad]) * pad
    assert plain[:4] == (1).to_bytes(4, "big") and plain[4:-pad] == payload
    assert len(wire) <= len(payload) + cbc_overhead(v.auth)


@pytest.mark.parametrize("v", VECTORS)
def test_a_tampered_or_replayed_stock_packet_is_dropped(pool: BufferPool, v: CbcVector) -> None:
    key = stock_keys(v, server=True)
    for flip in (5, 4 + HMAC_DIGESTS[v.auth] + 3, len(v.to_server) - 1):  # HMAC, IV, last block
        bad = bytearray(v.to_server)
        bad[flip] ^= 0x01
        buf = received(pool, bytes(bad))
        assert not key.open(buf, 0.0)
        assert bytes(buf.data) == bytes(bad)  # the window is the datagram's again
        pool.release(buf)
    assert key.auth_failures == 3 and key.opened == 0
    for expected in (True, False):
        buf = received(pool, v.to_server)
        assert key.open(buf, 0.0) is expected
        pool.release(buf)
    assert key.replays == 1  # checked only after the HMAC verified


# -- round trips, geometry, key derivation ---------------------------------------------------


def pair(cipher: str, auth: str) -> tuple[CbcHmacKey, CbcHmacKey]:
    key2 = os.urandom(256)
    mk = {"cipher": cipher, "auth": auth, "key2": key2, "key_id": 3}
    client = make_data_key(is_server=False, replay=ReplayWindow(), **mk)
    server = make_data_key(is_server=True, replay=ReplayWindow(), **mk)
    assert isinstance(client, CbcHmacKey) and isinstance(server, CbcHmacKey)
    return client, server


@pytest.mark.parametrize("auth", sorted(HMAC_DIGESTS))
@pytest.mark.parametrize("cipher", sorted(CBC_CIPHERS))
def test_round_trip_every_size_and_both_opcodes(cipher: str, auth: str) -> None:
    frame = cbc_frame(auth)
    pool = BufferPool(frame, 2)
    client, server = pair(cipher, auth)
    for size in [0, 1, 11, 12, 13, 27, 28, 29, 100, frame.tun_mtu]:
        for peer_id in (None, 7):
            payload = os.urandom(size)
            buf = pool.acquire()
            buf.append(payload)
            client.seal(buf, peer_id)
            assert len(buf) <= size + data_overhead(cipher, auth)
            assert (len(buf) - (4 if peer_id is not None else 1) - HMAC_DIGESTS[auth]) % 16 == 0
            # Received as the driver receives: copied to a fresh buffer at the headroom.
            rx = pool.acquire()
            rx.append(buf.data)
            pool.release(buf)
            assert server.open(rx, 0.0), (size, server)
            assert bytes(rx.data) == payload
            pool.release(rx)
    assert pool.stats.in_use == 0


def test_a_cbc_only_frame_has_no_aead_room() -> None:
    """`data-ciphers AES-256-CBC`: the pool frame registers the shared words and CBC's room,
    not the AEAD tag's (stock sizes its buffers for the ciphers it may use)."""
    names = {reg.name for reg in cbc_frame(ciphers=CBC_ONLY).registrations}
    assert {"opcode+peer-id", "packet-id", "cbc-hmac+iv", "cbc-padding"} <= names
    assert not {"aead-tag", "aead-assembly"} & names
    mixed = {reg.name for reg in cbc_frame(ciphers=MIXED).registrations}
    assert {"aead-tag", "cbc-padding"} <= mixed
    gcm = {reg.name for reg in cbc_frame(ciphers=("AES-256-GCM",)).registrations}
    assert "aead-tag" in gcm and "cbc-padding" not in gcm


def test_a_max_size_datagram_fits_a_received_buffer() -> None:
    """The frame's tailroom covers a full datagram placed at the headroom plus update slack."""
    for auth, ciphers in itertools.product(HMAC_DIGESTS, (MIXED, CBC_ONLY)):
        frame = cbc_frame(auth, ciphers=ciphers)
        client, server = pair("AES-256-CBC", auth)
        pool = BufferPool(frame, 2)
        buf = pool.acquire()
        buf.append(os.urandom(frame.tun_mtu))
        client.seal(buf, 1)
        rx = pool.acquire()
        rx.append(buf.data)
        assert server.open(rx, 0.0), server
        pool.release(buf)
        pool.release(rx)


def test_seal_without_room_changes_nothing(pool: BufferPool) -> None:
    client, _ = pair("AES-128-CBC", "SHA1")
    small = Buffer(64)
    small.reset(8)
    small.append(b"x" * 20)
    with pytest.raises(BoundsError):
        client.seal(small, 1)
    assert bytes(small.data) == b"x" * 20 and client.send_packet_id == 0


def test_garbage_never_raises(pool: BufferPool) -> None:
    _, server = pair("AES-256-CBC", "SHA256")
    for datagram in [b"", b"\x4b", b"\x4b" + bytes(60), b"\x4b" + os.urandom(83), b"\x33" * 90,
                     bytes([0x48 | 3]) + os.urandom(4 + 32 + 16 + 15)]:
        buf = received(pool, datagram)
        assert not server.open(buf, 0.0)
        pool.release(buf)
    assert server.opened == 0


def test_keys_come_from_key2_slots_like_aead() -> None:
    """cipher key = start of the 64-byte cipher slot, HMAC key = start of the hmac slot."""
    key2 = derive_key2(**LIVE)
    enc, dec = split_key2_cbc(key2, key_len=32, hmac_len=20, is_server=False)
    assert enc.cipher_key == key2[0:32] and enc.hmac_key == key2[64:84]
    assert dec.cipher_key == key2[128:160] and dec.hmac_key == key2[192:212]
    s_enc, s_dec = split_key2_cbc(key2, key_len=32, hmac_len=20, is_server=True)
    assert (s_enc.cipher_key, s_dec.cipher_key) == (dec.cipher_key, enc.cipher_key)
    assert "bytes>" in repr(enc) and key2[:4].hex() not in repr(enc)


def test_keepalive_ping_round_trip_and_no_payload_copies() -> None:
    """In place: sealing and opening allocate no payload-sized memory."""
    frame = cbc_frame("SHA256")
    pool = BufferPool(frame, 2)
    client, server = pair("AES-256-CBC", "SHA256")
    buf = pool.acquire()
    payload = os.urandom(1400)
    for _ in range(3):  # warm up (the random pool, method caches)
        buf.reset(frame.headroom)
        buf.append(payload)
        client.seal(buf, 1)
        assert server.open(buf, 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(50):
            buf.reset(frame.headroom)
            buf.append(payload)
            client.seal(buf, 1)
            assert server.open(buf, 0.0)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 4096, grown  # not 50 x 1400 bytes: nothing per packet survives or is copied
    buf.reset(frame.headroom)
    buf.append(PING_MAGIC)
    client.seal(buf, None)
    assert server.open(buf, 0.0) and bytes(buf.data) == PING_MAGIC
    pool.release(buf)


def test_wrong_key_lengths_and_names_are_refused() -> None:
    good = CbcDirectionKey(bytes(32), bytes(32))
    with pytest.raises(ValueError, match="BF-CBC"):
        CbcHmacKey(key_id=0, cipher="BF-CBC", auth="SHA256", encrypt=good, decrypt=good,
                   replay=ReplayWindow())
    with pytest.raises(ValueError, match="MD5"):
        make_data_key(cipher="AES-256-CBC", auth="MD5", key2=bytes(256), is_server=False,
                      key_id=0, replay=ReplayWindow())
    with pytest.raises(ValueError, match="wrong length"):
        CbcHmacKey(key_id=0, cipher="AES-128-CBC", auth="SHA256", encrypt=good, decrypt=good,
                   replay=ReplayWindow())
