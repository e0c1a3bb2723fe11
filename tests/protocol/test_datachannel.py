"""DataKey: in-place AEAD sealing and opening of P_DATA_V1/V2 in pooled buffers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import BoundsError, Buffer, BufferPool, Frame, FrameBuilder
from tests.protocol.vectors import C2S_IV, C2S_KEY, DATA_V2_PACKET, LIVE, S2C_IV, S2C_KEY
from tunnel.protocol.constants import NO_PEER_ID, PING_MAGIC
from tunnel.protocol.datachannel import (
    AEAD_ASSEMBLY_SIZE,
    AEAD_TAG_SIZE,
    DATA_V1_OVERHEAD,
    DATA_V2_OVERHEAD,
    SUPPORTED_CIPHERS,
    DataKey,
    cipher_key_length,
    register_data_channel,
)
from tunnel.protocol.datakey import PACKET_ID_WRAP_TRIGGER, PacketIdExhausted
from tunnel.protocol.prf import DirectionKey, derive_key2, split_key2
from tunnel.protocol.replay import ReplayWindow

CIPHERS = sorted(SUPPORTED_CIPHERS)

# The live vector of OPENVPN-WIRE.md 7.1 (stock 2.6.14 server, verb 9).
CAPTURED_PING = DATA_V2_PACKET
KM2_INPUTS = LIVE


# --- fixtures and helpers ------------------------------------------------------------------


def data_frame() -> Frame:
    builder = FrameBuilder(tun_mtu=1500)
    register_data_channel(builder)
    return builder.finalize()


@pytest.fixture
def pool() -> Iterator[BufferPool]:
    p = BufferPool(data_frame(), 8)
    yield p
    assert p.stats.in_use == 0, "a test leaked a pool buffer"


def random_direction(cipher: str) -> DirectionKey:
    return DirectionKey(os.urandom(cipher_key_length(cipher)), os.urandom(8))


def key_pair(
    cipher: str = "AES-256-GCM", key_id: int = 0, replay: ReplayWindow | None = None
) -> tuple[DataKey, DataKey]:
    """(sender, receiver): what the sender seals, the receiver opens."""
    a, b = random_direction(cipher), random_direction(cipher)
    sender = DataKey(key_id=key_id, cipher=cipher, encrypt=a, decrypt=b, replay=ReplayWindow())
    receiver = DataKey(
        key_id=key_id, cipher=cipher, encrypt=b, decrypt=a, replay=replay or ReplayWindow()
    )
    return sender, receiver


def filled(pool: BufferPool, payload: bytes) -> Buffer:
    buf = pool.acquire()
    buf.append(payload)
    return buf


def sealed_bytes(pool: BufferPool, key: DataKey, payload: bytes, peer_id: int | None) -> bytes:
    buf = filled(pool, payload)
    try:
        key.seal(buf, peer_id)
        return bytes(buf.data)
    finally:
        pool.release(buf)


def open_bytes(pool: BufferPool, key: DataKey, datagram: bytes, now: float = 0.0) -> bytes | None:
    """Open a copy of `datagram` in a fresh pool buffer; the plaintext, or None if refused."""
    buf = filled(pool, datagram)
    try:
        return bytes(buf.data) if key.open(buf, now) else None
    finally:
        pool.release(buf)


def state(buf: Buffer) -> tuple[int, int, bytes]:
    return buf.offset, len(buf), bytes(buf.data)


# --- geometry ------------------------------------------------------------------------------


def test_registrations_make_the_frame() -> None:
    frame = data_frame()
    names = {reg.name: (reg.headroom, reg.tailroom) for reg in frame.registrations}
    assert names == {
        "opcode+peer-id": (4, 0),
        "packet-id": (4, 0),
        "aead-tag": (16, 0),
        "aead-assembly": (0, 16),
    }
    assert frame.overhead == DATA_V2_OVERHEAD == 24
    assert frame.link_mtu == 1524
    assert frame.headroom >= DATA_V2_OVERHEAD
    assert frame.tailroom >= AEAD_ASSEMBLY_SIZE
    assert DATA_V1_OVERHEAD == 21


def test_cipher_key_length() -> None:
    assert cipher_key_length("AES-256-GCM") == 32
    assert cipher_key_length("AES-128-GCM") == 16
    assert cipher_key_length("CHACHA20-POLY1305") == 32
    assert cipher_key_length("aes-256-gcm") == 32  # OpenVPN matches cipher names case-blind
    assert SUPPORTED_CIPHERS["AES-256-GCM"] == (AESGCM, 32)
    assert SUPPORTED_CIPHERS["CHACHA20-POLY1305"] == (ChaCha20Poly1305, 32)
    with pytest.raises(ValueError, match="unsupported"):
        cipher_key_length("BF-CBC")


def test_constructor_validates() -> None:
    good = random_direction("AES-256-GCM")
    with pytest.raises(ValueError, match="key_id"):
        DataKey(key_id=8, cipher="AES-256-GCM", encrypt=good, decrypt=good, replay=ReplayWindow())
    with pytest.raises(ValueError, match="unsupported"):
        DataKey(key_id=0, cipher="AES-256-CBC", encrypt=good, decrypt=good, replay=ReplayWindow())
    short = DirectionKey(bytes(16), bytes(8))
    with pytest.raises(ValueError, match="16 bytes"):
        DataKey(key_id=0, cipher="AES-256-GCM", encrypt=good, decrypt=short, replay=ReplayWindow())


def test_repr_never_shows_keys() -> None:
    enc = DirectionKey(C2S_KEY, C2S_IV)
    dec = DirectionKey(S2C_KEY, S2C_IV)
    key = DataKey(key_id=3, cipher="AES-256-GCM", encrypt=enc, decrypt=dec, replay=ReplayWindow())
    text = repr(key)
    assert "key_id=3" in text and "AES-256-GCM" in text
    for secret in (C2S_KEY, C2S_IV, S2C_KEY, S2C_IV):
        assert secret.hex() not in text.lower()
        assert repr(secret) not in text
        assert secret.hex()[:8] not in text.lower()


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("peer_id", [None, 0, 7, NO_PEER_ID])
def test_round_trip_all_sizes(pool: BufferPool, cipher: str, peer_id: int | None) -> None:
    sender, receiver = key_pair(cipher, key_id=2)
    overhead = DATA_V1_OVERHEAD if peer_id is None else DATA_V2_OVERHEAD
    frame = pool.frame
    payload_all = os.urandom(frame.payload_size)
    buf = pool.acquire()
    try:
        for size in range(frame.payload_size + 1):
            payload = payload_all[:size]
            buf.reset(frame.headroom)
            buf.append(payload)
            sender.seal(buf, peer_id)
            assert len(buf) == size + overhead
            assert buf.offset == frame.headroom - overhead
            assert receiver.open(buf, 1.0)
            assert buf.offset == frame.headroom and buf.equals(payload)
    finally:
        pool.release(buf)
    count = frame.payload_size + 1
    assert sender.sealed == receiver.opened == count
    assert sender.send_packet_id == count
    assert receiver.auth_failures == receiver.replays == receiver.short == 0


@pytest.mark.parametrize("cipher", CIPHERS)
def test_wire_format_matches_one_shot_aead(pool: BufferPool, cipher: str) -> None:
    """Layout, AAD and nonce, checked against cryptography's non-in-place API."""
    aead_class, _ = SUPPORTED_CIPHERS[cipher]
    enc, dec = random_direction(cipher), random_direction(cipher)
    key = DataKey(key_id=5, cipher=cipher, encrypt=enc, decrypt=dec, replay=ReplayWindow())
    aead = aead_class(enc.cipher_key)
    payload = os.urandom(100)

    v2 = sealed_bytes(pool, key, payload, 0x123456)
    nonce = (1).to_bytes(4, "big") + enc.implicit_iv
    header = bytes([(9 << 3) | 5, 0x12, 0x34, 0x56]) + (1).to_bytes(4, "big")
    ct_tag = aead.encrypt(nonce, payload, header)
    assert v2 == header + ct_tag[-16:] + ct_tag[:-16]

    v1 = sealed_bytes(pool, key, payload, None)
    nonce = (2).to_bytes(4, "big") + enc.implicit_iv
    pid = (2).to_bytes(4, "big")
    ct_tag = aead.encrypt(nonce, payload, pid)  # V1: the AAD is the packet-id alone
    assert v1 == bytes([(6 << 3) | 5]) + pid + ct_tag[-16:] + ct_tag[:-16]


def test_each_key_id_and_direction_has_its_own_counter(pool: BufferPool) -> None:
    a, _ = key_pair()
    b, _ = key_pair(key_id=1)
    assert sealed_bytes(pool, a, b"x", 0)[4:8] == b"\0\0\0\1"
    assert sealed_bytes(pool, a, b"x", None)[1:5] == b"\0\0\0\2"
    assert sealed_bytes(pool, b, b"x", 0)[4:8] == b"\0\0\0\1"


# --- the live vector -----------------------------------------------------------------------


def server_and_client_keys(c2s: DirectionKey, s2c: DirectionKey) -> tuple[DataKey, DataKey]:
    server = DataKey(
        key_id=0, cipher="AES-256-GCM", encrypt=s2c, decrypt=c2s, replay=ReplayWindow()
    )
    client = DataKey(
        key_id=0, cipher="AES-256-GCM", encrypt=c2s, decrypt=s2c, replay=ReplayWindow()
    )
    return server, client


def test_live_vector_open_on_server_side(pool: BufferPool) -> None:
    server, _ = server_and_client_keys(DirectionKey(C2S_KEY, C2S_IV), DirectionKey(S2C_KEY, S2C_IV))
    buf = filled(pool, CAPTURED_PING)
    try:
        assert server.open(buf, 0.0)
        assert buf.equals(PING_MAGIC)
    finally:
        pool.release(buf)
    assert server.replay.highest == 1


def test_live_vector_seal_on_client_side(pool: BufferPool) -> None:
    _, client = server_and_client_keys(DirectionKey(C2S_KEY, C2S_IV), DirectionKey(S2C_KEY, S2C_IV))
    assert sealed_bytes(pool, client, PING_MAGIC, 0) == CAPTURED_PING


def test_live_vector_through_key_derivation(pool: BufferPool) -> None:
    """prf.split_key2 and DataKey agree on roles: the server opens what the client sealed."""
    key2 = derive_key2(**KM2_INPUTS)
    server_enc, server_dec = split_key2(key2, key_len=32, is_server=True)
    client_enc, client_dec = split_key2(key2, key_len=32, is_server=False)
    server = DataKey(
        key_id=0,
        cipher="AES-256-GCM",
        encrypt=server_enc,
        decrypt=server_dec,
        replay=ReplayWindow(),
    )
    client = DataKey(
        key_id=0,
        cipher="AES-256-GCM",
        encrypt=client_enc,
        decrypt=client_dec,
        replay=ReplayWindow(),
    )
    assert open_bytes(pool, server, CAPTURED_PING) == PING_MAGIC
    assert sealed_bytes(pool, client, PING_MAGIC, 0) == CAPTURED_PING
    reply = sealed_bytes(pool, server, PING_MAGIC, 0)
    assert open_bytes(pool, client, reply) == PING_MAGIC


# --- refusals: tampering, replays, wrong keys, truncation ----------------------------------


@pytest.mark.parametrize("peer_id", [None, 0])
def test_tampering_any_byte_is_refused(pool: BufferPool, peer_id: int | None) -> None:
    sender, receiver = key_pair()
    datagram = sealed_bytes(pool, sender, os.urandom(60), peer_id)
    for pos in range(len(datagram)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(datagram)
            bad[pos] ^= flip
            before = (receiver.auth_failures, receiver.misrouted)
            assert open_bytes(pool, receiver, bytes(bad)) is None
            if pos == 0:  # another opcode or key_id: not this key's packet at all
                assert (receiver.auth_failures, receiver.misrouted) == (before[0], before[1] + 1)
            else:
                assert (receiver.auth_failures, receiver.misrouted) == (before[0] + 1, before[1])
    assert receiver.opened == 0 and receiver.replay.accepted == 0
    assert open_bytes(pool, receiver, datagram) is not None  # the original still opens


def test_header_is_authenticated(pool: BufferPool) -> None:
    """A V2 packet re-labelled with another key_id fails that key's tag check (the AAD)."""
    a, b = random_direction("AES-256-GCM"), random_direction("AES-256-GCM")
    sender = DataKey(key_id=1, cipher="AES-256-GCM", encrypt=a, decrypt=b, replay=ReplayWindow())
    other = DataKey(key_id=2, cipher="AES-256-GCM", encrypt=b, decrypt=a, replay=ReplayWindow())
    datagram = bytearray(sealed_bytes(pool, sender, b"payload", 0))
    datagram[0] = (9 << 3) | 2
    assert open_bytes(pool, other, bytes(datagram)) is None
    assert other.auth_failures == 1


@pytest.mark.parametrize("peer_id", [None, 0])
def test_replayed_datagram_is_refused(pool: BufferPool, peer_id: int | None) -> None:
    sender, receiver = key_pair()
    datagram = sealed_bytes(pool, sender, b"hello", peer_id)
    assert open_bytes(pool, receiver, datagram) == b"hello"
    assert open_bytes(pool, receiver, datagram) is None
    assert (receiver.replays, receiver.auth_failures, receiver.opened) == (1, 0, 1)
    assert receiver.replay.replays == 1


def test_replay_window_consulted_only_after_authentication(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    datagram = bytearray(sealed_bytes(pool, sender, b"hello", 0))
    forged = bytearray(datagram)
    forged[4:8] = (1000).to_bytes(4, "big")  # a forged high packet-id must not move the window
    assert open_bytes(pool, receiver, bytes(forged)) is None
    assert receiver.auth_failures == 1 and receiver.replay.highest == 0
    assert open_bytes(pool, receiver, bytes(datagram)) == b"hello"


def test_reordered_datagrams_accepted(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    datagrams = [sealed_bytes(pool, sender, bytes([i]), 0) for i in range(10)]
    for i in (9, 0, 5, 3, 8, 1, 2, 4, 7, 6):
        assert open_bytes(pool, receiver, datagrams[i]) == bytes([i])
    assert receiver.opened == 10


def test_authentic_pid_zero_is_refused(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    sender._send_pid = -1  # white-box: make the next seal use packet-id 0
    datagram = sealed_bytes(pool, sender, b"zero", 0)
    assert datagram[4:8] == bytes(4)
    assert open_bytes(pool, receiver, datagram) is None
    assert receiver.replays == 1 and receiver.auth_failures == 0


@pytest.mark.parametrize("cipher", CIPHERS)
def test_wrong_key_is_an_auth_failure(pool: BufferPool, cipher: str) -> None:
    sender, _ = key_pair(cipher)
    _, stranger = key_pair(cipher)
    assert open_bytes(pool, stranger, sealed_bytes(pool, sender, b"secret", 0)) is None
    assert stranger.auth_failures == 1


def test_wrong_cipher_is_an_auth_failure(pool: BufferPool) -> None:
    enc = DirectionKey(os.urandom(32), os.urandom(8))
    gcm = DataKey(key_id=0, cipher="AES-256-GCM", encrypt=enc, decrypt=enc, replay=ReplayWindow())
    chacha = DataKey(
        key_id=0, cipher="CHACHA20-POLY1305", encrypt=enc, decrypt=enc, replay=ReplayWindow()
    )
    assert open_bytes(pool, chacha, sealed_bytes(pool, gcm, b"x" * 40, 0)) is None
    assert chacha.auth_failures == 1


@pytest.mark.parametrize("peer_id", [None, 0])
def test_truncated_datagrams_refused_without_exception(
    pool: BufferPool, peer_id: int | None
) -> None:
    sender, receiver = key_pair()
    datagram = sealed_bytes(pool, sender, os.urandom(30), peer_id)
    overhead = DATA_V1_OVERHEAD if peer_id is None else DATA_V2_OVERHEAD
    for n in range(len(datagram)):
        assert open_bytes(pool, receiver, datagram[:n]) is None
    assert receiver.short == overhead
    assert receiver.auth_failures == len(datagram) - overhead
    assert receiver.misrouted == receiver.opened == 0


def test_empty_buffer_is_short(pool: BufferPool) -> None:
    _, receiver = key_pair()
    assert open_bytes(pool, receiver, b"") is None
    assert receiver.short == 1


def test_open_without_tailroom_drops(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    datagram = sealed_bytes(pool, sender, b"abc", 0)
    buf = Buffer(len(datagram))  # exactly the datagram: no tailroom to assemble the tag
    buf.append(datagram)
    assert not receiver.open(buf, 0.0)
    assert receiver.short == 1
    assert state(buf) == (0, len(datagram), datagram)


def test_failed_open_restores_the_window(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    datagram = bytearray(sealed_bytes(pool, sender, b"abcdef", 0))
    datagram[-1] ^= 1
    buf = filled(pool, bytes(datagram))
    try:
        offset = buf.offset
        assert not receiver.open(buf, 0.0)
        assert (buf.offset, len(buf)) == (offset, len(datagram))
    finally:
        pool.release(buf)


# --- seal failures change nothing ----------------------------------------------------------


def test_seal_without_headroom_raises_and_changes_nothing() -> None:
    sender, _ = key_pair()
    buf = Buffer(100)
    buf.reset(DATA_V2_OVERHEAD - 1)
    buf.append(b"payload")
    before = state(buf)
    with pytest.raises(BoundsError):
        sender.seal(buf, 0)
    assert state(buf) == before and sender.send_packet_id == 0
    buf.reset(DATA_V1_OVERHEAD - 1)
    buf.append(b"payload")
    with pytest.raises(BoundsError):
        sender.seal(buf, None)
    assert sender.sealed == 0


def test_seal_without_tailroom_raises_and_changes_nothing() -> None:
    sender, _ = key_pair()
    buf = Buffer(DATA_V2_OVERHEAD + 10 + AEAD_ASSEMBLY_SIZE - 1)
    buf.reset(DATA_V2_OVERHEAD)
    buf.append(b"0123456789")
    before = state(buf)
    with pytest.raises(BoundsError):
        sender.seal(buf, 0)
    assert state(buf) == before and sender.send_packet_id == 0


@pytest.mark.parametrize("peer_id", [-1, NO_PEER_ID + 1])
def test_seal_refuses_peer_id_out_of_range(pool: BufferPool, peer_id: int) -> None:
    sender, _ = key_pair()
    buf = filled(pool, b"payload")
    try:
        before = state(buf)
        with pytest.raises(ValueError, match="peer-id"):
            sender.seal(buf, peer_id)
        assert state(buf) == before and sender.send_packet_id == 0
    finally:
        pool.release(buf)


# --- packet-id wrap ------------------------------------------------------------------------


def test_packet_id_wrap_trigger_and_roll_over(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    sender._send_pid = PACKET_ID_WRAP_TRIGGER - 2  # white-box: skip 4 billion packets
    assert open_bytes(pool, receiver, sealed_bytes(pool, sender, b"a", 0)) == b"a"
    assert not sender.needs_renegotiation
    assert open_bytes(pool, receiver, sealed_bytes(pool, sender, b"b", 0)) == b"b"
    assert sender.send_packet_id == PACKET_ID_WRAP_TRIGGER
    assert bool(sender.needs_renegotiation)  # bool(): mypy keeps the narrowing from above

    sender._send_pid = 0xFFFFFFFE
    last = sealed_bytes(pool, sender, b"last", 0)
    assert last[4:8] == b"\xff\xff\xff\xff"
    assert open_bytes(pool, receiver, last) == b"last"
    buf = filled(pool, b"one too many")
    try:
        before = state(buf)
        with pytest.raises(PacketIdExhausted, match="roll over"):
            sender.seal(buf, 0)
        assert state(buf) == before
        assert sender.send_packet_id == 0xFFFFFFFF
    finally:
        pool.release(buf)


# --- memory: in place, neighbours untouched -------------------------------------------------


@pytest.mark.parametrize("peer_id", [None, 0])
def test_slab_neighbours_untouched(peer_id: int | None) -> None:
    frame = data_frame()
    pool = BufferPool(frame, 5)
    sender, receiver = key_pair()
    bufs = [pool.acquire() for _ in range(5)]
    size = frame.buffer_size
    for i, b in enumerate(bufs):  # every byte of every block gets a known pattern
        b.reset(0)
        b.append(bytes([0xA0 + i]) * size)
    victim = bufs[2]
    payload = os.urandom(frame.payload_size)
    victim.reset(frame.headroom)
    victim.inc_len(len(payload))  # keeps the pattern on both sides of the payload
    victim.data[:] = payload
    start = victim.offset
    sender.seal(victim, peer_id)
    assert receiver.open(victim, 0.0)
    assert victim.equals(payload) and victim.offset == start
    for i, b in enumerate(bufs):
        b.reset(0)
        b.inc_len(size)
        block = bytes(b.data)
        if b is victim:
            overhead = DATA_V1_OVERHEAD if peer_id is None else DATA_V2_OVERHEAD
            used_from = start - overhead
            used_to = start + len(payload) + AEAD_ASSEMBLY_SIZE
            assert block[:used_from] == bytes([0xA0 + i]) * used_from
            assert block[used_to:] == bytes([0xA0 + i]) * (size - used_to)
        else:
            assert block == bytes([0xA0 + i]) * size
        pool.release(b)
    assert pool.stats.in_use == 0


def test_seal_and_open_are_in_place(pool: BufferPool) -> None:
    sender, receiver = key_pair()
    buf = filled(pool, b"q" * 200)
    try:
        view = buf.tailroom_view()  # any view of the block: it must see the transformations
        start = buf.offset
        sender.seal(buf, 0)
        assert buf.offset == start - DATA_V2_OVERHEAD
        assert receiver.open(buf, 0.0)
        assert buf.offset == start and len(buf) == 200
        assert view.obj is buf.data.obj  # still the same block
    finally:
        pool.release(buf)


# --- no exception on any input -------------------------------------------------------------

first_bytes = st.sampled_from([(6 << 3), (9 << 3), (9 << 3) | 1, 0x20, 0x00])


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=first_bytes, rest=st.binary(max_size=120), peer=st.booleans(), tailroom=st.integers(0, 40)
)
def test_open_never_raises(first: int, rest: bytes, peer: bool, tailroom: int) -> None:
    _, receiver = key_pair(key_id=0 if first != (9 << 3) | 1 else 1)
    datagram = bytes([first]) + rest
    buf = Buffer(len(datagram) + tailroom)
    buf.append(datagram)
    assert receiver.open(buf, 0.0) is False
    assert (buf.offset, len(buf)) == (0, len(datagram))
    counted = receiver.short + receiver.misrouted + receiver.auth_failures + receiver.replays
    assert counted == 1


@settings(deadline=None, max_examples=200)
@given(
    payload=st.binary(max_size=300),
    headroom=st.integers(0, 40),
    tailroom=st.integers(0, 40),
    peer_id=st.one_of(st.none(), st.integers(0, NO_PEER_ID)),
)
def test_seal_any_geometry(
    payload: bytes, headroom: int, tailroom: int, peer_id: int | None
) -> None:
    """Either a correct datagram or a BoundsError that left everything as it was."""
    sender, receiver = key_pair("CHACHA20-POLY1305")
    buf = Buffer(headroom + len(payload) + tailroom)
    buf.reset(headroom)
    buf.append(payload)
    before = state(buf)
    overhead = DATA_V1_OVERHEAD if peer_id is None else DATA_V2_OVERHEAD
    if headroom < overhead or tailroom < AEAD_TAG_SIZE:
        with pytest.raises(BoundsError):
            sender.seal(buf, peer_id)
        assert state(buf) == before and sender.send_packet_id == 0
        return
    sender.seal(buf, peer_id)
    assert len(buf) == len(payload) + overhead
    assert receiver.open(buf, 0.0) and buf.equals(payload)
