"""OpenVPN's TLS 1.0 PRF and key2 split, against the vectors of OPENVPN-WIRE.md section 7.1."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol.vectors import (
    C2S_IV,
    C2S_KEY,
    DATA_V2_PACKET,
    LIVE,
    MASTER,
    S2C_IV,
    S2C_KEY,
)
from tunnel.protocol.constants import PING_MAGIC
from tunnel.protocol.prf import (
    DirectionKey,
    derive_key2,
    derive_master_secret,
    split_key2,
    tls1_prf,
)

# --- OpenVPN's own unit-test vector (tests/unit_tests/openvpn/test_crypto.c) ----------------

PRF_SECRET = (
    b"Lorem ipsum dolor sit amet, consectetur adipisici elit, sed eiusmod tempor incidunt ut "
    b"labore et dolore magna aliqua."
)
PRF_SEED = b"Quis aute iure reprehenderit in voluptate velit esse cillum dolore"
PRF_OUT = bytes.fromhex("d98c8518c85e946927916acfc2d592fbb1567e4b4b1459e6a904ac2ddab72d67")


def reference_prf(secret: bytes, seed: bytes, n: int) -> bytes:
    """RFC 2246 written out longhand, as an independent check of the implementation."""

    def p_hash(h: str, key: bytes) -> bytes:
        out, a = b"", seed
        while len(out) < n:
            a = hmac.new(key, a, h).digest()
            out += hmac.new(key, a + seed, h).digest()
        return out[:n]

    half = -(-len(secret) // 2)
    md5 = p_hash("md5", secret[:half])
    sha = p_hash("sha1", secret[-half:] if half else b"")
    return bytes(a ^ b for a, b in zip(md5, sha, strict=True))


def test_openvpn_unit_test_vector() -> None:
    assert len(PRF_SECRET) == 117  # odd: the halves share the middle byte
    assert tls1_prf(PRF_SECRET, PRF_SEED, 32) == PRF_OUT


def test_prf_prefix_property_and_zero_length() -> None:
    long = tls1_prf(PRF_SECRET, PRF_SEED, 300)
    assert long[:32] == PRF_OUT
    assert len(long) == 300
    assert tls1_prf(PRF_SECRET, PRF_SEED, 0) == b""
    with pytest.raises(ValueError):
        tls1_prf(PRF_SECRET, PRF_SEED, -1)


@settings(deadline=None, max_examples=60)
@given(secret=st.binary(max_size=80), seed=st.binary(max_size=80), n=st.integers(0, 200))
def test_prf_matches_longhand_reference(secret: bytes, seed: bytes, n: int) -> None:
    assert tls1_prf(secret, seed, n) == reference_prf(secret, seed, n)


@pytest.mark.parametrize("size", [127, 128, 129, 130, 300])
def test_prf_halves_longer_than_a_hash_block(size: int) -> None:
    # Halves over 64 bytes (MD5's and SHA-1's block) are hashed first (RFC 2104); the PRF
    # builds its HMACs from the hash objects itself, so that path is checked against `hmac`.
    secret = (bytes(range(256)) * 2)[:size]
    assert tls1_prf(secret, PRF_SEED, 150) == reference_prf(secret, PRF_SEED, 150)


def test_odd_secret_halves_overlap() -> None:
    # With a 3-byte secret S1 = s[0:2] and S2 = s[1:3]; changing the middle byte changes both.
    secret = b"abc"
    seed = b"seed"
    md5 = hmac.new(b"ab", hmac.new(b"ab", seed, hashlib.md5).digest() + seed, hashlib.md5)
    sha = hmac.new(b"bc", hmac.new(b"bc", seed, hashlib.sha1).digest() + seed, hashlib.sha1)
    expected = bytes(a ^ b for a, b in zip(md5.digest(), sha.digest()[:16], strict=True))
    assert tls1_prf(secret, seed, 16) == expected


def test_live_master_secret() -> None:
    master = derive_master_secret(
        client_pre_master=LIVE["client_pre_master"],
        client_random1=LIVE["client_random1"],
        server_random1=LIVE["server_random1"],
    )
    assert master == MASTER


def test_live_key2_layout() -> None:
    key2 = derive_key2(**LIVE)
    assert len(key2) == 256
    assert key2[0:32] == C2S_KEY
    assert key2[64:72] == C2S_IV
    assert key2[128:160] == S2C_KEY
    assert key2[192:200] == S2C_IV


def test_split_key2_directions() -> None:
    key2 = derive_key2(**LIVE)
    c_enc, c_dec = split_key2(key2, key_len=32, is_server=False)
    s_enc, s_dec = split_key2(key2, key_len=32, is_server=True)
    assert c_enc == DirectionKey(C2S_KEY, C2S_IV)
    assert c_dec == DirectionKey(S2C_KEY, S2C_IV)
    assert (s_enc, s_dec) == (c_dec, c_enc)
    # AES-128-GCM takes the first 16 bytes of the same slot.
    short_enc, _ = split_key2(key2, key_len=16, is_server=False)
    assert short_enc.cipher_key == C2S_KEY[:16]
    assert short_enc.implicit_iv == C2S_IV


def test_live_data_v2_packet_decrypts_to_ping() -> None:
    """The captured packet, opened with nonce pid||iv, AAD header||pid, tag before ciphertext."""
    enc, _ = split_key2(derive_key2(**LIVE), key_len=32, is_server=False)
    header, pid = DATA_V2_PACKET[:4], DATA_V2_PACKET[4:8]
    tag, ciphertext = DATA_V2_PACKET[8:24], DATA_V2_PACKET[24:]
    plain = AESGCM(enc.cipher_key).decrypt(pid + enc.implicit_iv, ciphertext + tag, header + pid)
    assert plain == PING_MAGIC
    # and the server's decrypt key is the same one
    _, server_dec = split_key2(derive_key2(**LIVE), key_len=32, is_server=True)
    assert server_dec == enc


def test_direction_key_repr_hides_secrets() -> None:
    key = DirectionKey(C2S_KEY, C2S_IV)
    text = repr(key) + str(key)
    assert C2S_KEY.hex() not in text
    assert C2S_IV.hex() not in text
    assert "32 bytes" in text


@pytest.mark.parametrize(
    "field, bad",
    [
        ("client_pre_master", b"\0" * 47),
        ("client_random1", b"\0" * 31),
        ("client_random2", b"\0" * 33),
        ("server_random1", b""),
        ("server_random2", b"\0" * 8),
        ("client_sid", b"\0" * 7),
        ("server_sid", b"\0" * 9),
    ],
)
def test_derive_key2_rejects_wrong_sizes(field: str, bad: bytes) -> None:
    with pytest.raises(ValueError, match="must be"):
        derive_key2(**{**LIVE, field: bad})


def test_split_key2_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        split_key2(b"\0" * 255, key_len=32, is_server=False)
    with pytest.raises(ValueError):
        split_key2(b"\0" * 256, key_len=0, is_server=False)
    with pytest.raises(ValueError):
        split_key2(b"\0" * 256, key_len=65, is_server=False)
    with pytest.raises(ValueError):
        DirectionKey(b"k" * 32, b"iv")
