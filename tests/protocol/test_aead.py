"""aead.py: the libcrypto AEAD (tunnel/_aead.c) and the cryptography one give the same bytes,
verify the same tags and refuse the same calls; DataKey opens and seals the stock binary's
captured packet through each."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from core import BufferPool, FrameBuilder
from tests.protocol.vector_keys import vector_key_pair
from tests.protocol.vectors import DATA_V2_PACKET
from tunnel.protocol import aead, datachannel
from tunnel.protocol.aead import BACKEND, BACKENDS, new_aead
from tunnel.protocol.constants import PING_MAGIC
from tunnel.protocol.datachannel import register_data_channel

CIPHERS = {"AES-256-GCM": (AESGCM, 32), "AES-128-GCM": (AESGCM, 16),
           "CHACHA20-POLY1305": (ChaCha20Poly1305, 32)}
NATIVE = pytest.param("libcrypto", marks=pytest.mark.native_aead)
BOTH = [NATIVE, "cryptography"]
TAG = 16


def backend_or_skip(name: str) -> str:
    # The marker fails the test in CI when the extension is missing, skips it elsewhere; this
    # only keeps a developer run without the extension from a KeyError below.
    if name not in BACKENDS:
        pytest.skip("tunnel._aead is not built here")
    return name


def keys(cipher: str) -> tuple[bytes, bytes]:
    return os.urandom(CIPHERS[cipher][1]), os.urandom(8)


def one_shot(cipher: str, key: bytes, iv: bytes, pid: int, aad: bytes, text: bytes) -> bytes:
    """tag || ciphertext, from cryptography's one-shot encrypt: the reference."""
    sealed = CIPHERS[cipher][0](key).encrypt(struct.pack(">I", pid) + iv, text, aad)
    return sealed[-TAG:] + sealed[:-TAG]


@pytest.mark.native_aead
def test_the_extension_is_built_and_is_the_default() -> None:
    assert "libcrypto" in BACKENDS
    if not os.environ.get("TUNNEL_AEAD"):
        assert BACKEND == "libcrypto"


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("cipher", sorted(CIPHERS))
@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 1500), aad_from=st.sampled_from([0, 1]),
       pid=st.integers(0, 0xFFFFFFFF), data=st.binary(min_size=1524, max_size=1524))
def test_seal_is_the_one_shot_aead_and_opens_back(
    backend: str, cipher: str, size: int, aad_from: int, pid: int, data: bytes,
) -> None:
    backend = backend_or_skip(backend)
    key, iv = keys(cipher)
    tag_at, ct_at = 8, 24
    end = ct_at + size
    datagram = bytearray(data[:end]) + bytes(TAG)  # + the tailroom the fallback writes into
    plain, aad = bytes(datagram[ct_at:end]), bytes(datagram[aad_from:tag_at])
    head = bytes(datagram[:tag_at])
    view = memoryview(datagram)
    new_aead(cipher, key, iv, True, backend).seal(view, aad_from, tag_at, ct_at, end, pid)
    assert datagram[:tag_at] == head
    assert bytes(datagram[tag_at:end]) == one_shot(cipher, key, iv, pid, aad, plain)
    # Either implementation opens what either sealed.
    for other in BACKENDS:
        copy = bytearray(datagram)
        opener = new_aead(cipher, key, iv, False, other)
        assert opener.open(memoryview(copy), aad_from, tag_at, ct_at, end, pid)
        assert bytes(copy[ct_at:end]) == plain


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_any_changed_byte_or_packet_id_fails_the_tag(backend: str, cipher: str) -> None:
    backend = backend_or_skip(backend)
    key, iv = keys(cipher)
    sealed = bytearray(os.urandom(8)) + bytes(TAG) + bytearray(os.urandom(40)) + bytes(TAG)
    end = len(sealed) - TAG
    new_aead(cipher, key, iv, True, backend).seal(memoryview(sealed), 0, 8, 24, end, 7)
    opener = new_aead(cipher, key, iv, False, backend)
    for index in range(end):
        copy = bytearray(sealed)
        copy[index] ^= 0x01
        assert not opener.open(memoryview(copy), 0, 8, 24, end, 7), index
    assert not opener.open(memoryview(bytearray(sealed)), 0, 8, 24, end, 8)
    # The same opener still opens the untouched datagram afterwards (no state left behind).
    assert opener.open(memoryview(bytearray(sealed)), 0, 8, 24, end, 7)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize(
    ("aad_from", "tag_at", "ct_at", "end", "pid"),
    [(-1, 8, 24, 40, 1), (9, 8, 24, 40, 1), (0, 8, 23, 40, 1), (0, 8, 24, 23, 1),
     (0, 8, 24, 57, 1), (0, 8, 24, 40, -1), (0, 8, 24, 40, 1 << 32)],
)
def test_bad_offsets_and_packet_ids_are_refused_before_any_change(
    backend: str, aad_from: int, tag_at: int, ct_at: int, end: int, pid: int,
) -> None:
    backend = backend_or_skip(backend)
    key, iv = keys("AES-256-GCM")
    datagram = bytearray(os.urandom(40 + TAG))
    before = bytes(datagram)
    for encrypt in (True, False):
        direction = new_aead("AES-256-GCM", key, iv, encrypt, backend)
        call = direction.seal if encrypt else direction.open
        with pytest.raises(ValueError):
            call(memoryview(datagram), aad_from, tag_at, ct_at, end, pid)
        assert datagram == before


@pytest.mark.parametrize("backend", BOTH)
def test_a_direction_does_only_its_own_job(backend: str) -> None:
    backend = backend_or_skip(backend)
    key, iv = keys("AES-128-GCM")
    datagram = memoryview(bytearray(64))
    with pytest.raises(TypeError):
        new_aead("AES-128-GCM", key, iv, False, backend).seal(datagram, 0, 8, 24, 40, 1)
    with pytest.raises(TypeError):
        new_aead("AES-128-GCM", key, iv, True, backend).open(datagram, 0, 8, 24, 40, 1)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize(("cipher", "key_len", "iv_len"),
                         [("AES-256-GCM", 16, 8), ("AES-128-GCM", 32, 8), ("BF-CBC", 16, 8),
                          ("CHACHA20-POLY1305", 32, 12)])
def test_bad_ciphers_and_lengths_are_refused_without_the_key(
    backend: str, cipher: str, key_len: int, iv_len: int,
) -> None:
    backend = backend_or_skip(backend)
    key = b"\xab" * key_len
    with pytest.raises(ValueError) as refused:
        new_aead(cipher, key, bytes(iv_len), True, backend)
    assert "ab" * 4 not in str(refused.value) and "\\xab" not in str(refused.value)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_rows_are_the_per_row_aead(backend: str, cipher: str) -> None:
    backend = backend_or_skip(backend)
    key, iv = keys(cipher)
    sizes = [0, 1, 100, 1400, 37]
    rows = [bytearray(os.urandom(24 + size + TAG)) for size in sizes]
    plains_before = [bytes(row[24:24 + size]) for row, size in zip(rows, sizes, strict=True)]
    views = [memoryview(row) for row in rows]
    plains = [v[24:24 + size] for v, size in zip(views, sizes, strict=True)]
    outs = [v[24:24 + size + TAG] for v, size in zip(views, sizes, strict=True)]
    aads = [v[0:8] for v in views]
    new_aead(cipher, key, iv, True, backend).seal_rows(5, plains, outs, aads)
    for index, (row, size) in enumerate(zip(rows, sizes, strict=True)):
        expected = one_shot(cipher, key, iv, 5 + index, bytes(row[:8]), plains_before[index])
        assert bytes(row[24 + size:24 + size + TAG]) + bytes(row[24:24 + size]) == expected
    rows[2][30] ^= 0x80  # one forged row among good ones
    oks = new_aead(cipher, key, iv, False, backend).open_rows(
        [5, 6, 7, 8, 9], outs, plains, aads)
    assert oks == [True, True, False, True, True]
    for index in (0, 1, 3, 4):
        assert bytes(plains[index]) == plains_before[index]


@pytest.mark.parametrize("backend", BOTH)
def test_rows_refuse_packet_ids_past_the_last(backend: str) -> None:
    backend = backend_or_skip(backend)
    key, iv = keys("AES-256-GCM")
    row = memoryview(bytearray(24 + TAG))
    with pytest.raises(ValueError):
        new_aead("AES-256-GCM", key, iv, True, backend).seal_rows(
            0xFFFFFFFF, [row[24:24], row[24:24]], [row[24:], row[24:]], [row[:8], row[:8]])


@pytest.mark.parametrize("backend", BOTH)
def test_datakey_opens_and_seals_the_stock_binarys_packet(
    backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPENVPN-WIRE.md 7.1's captured client->server ping, through DataKey on each backend."""
    backend = backend_or_skip(backend)
    monkeypatch.setattr(datachannel, "new_aead",
                        lambda *args: aead.new_aead(*args, backend=backend))
    builder = FrameBuilder(tun_mtu=1500)
    register_data_channel(builder)
    pool = BufferPool(builder.finalize(), 2)
    client, server = vector_key_pair()
    received, sent = pool.acquire(), pool.acquire()
    try:
        received.append(DATA_V2_PACKET)
        assert server.open(received, 0.0) and received.equals(PING_MAGIC)
        sent.append(PING_MAGIC)
        client.seal(sent, 0)
        assert sent.equals(DATA_V2_PACKET)
    finally:
        pool.release(received)
        pool.release(sent)
    assert pool.stats.in_use == 0


def _demo(aead_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNNEL_AEAD": aead_env}
    return subprocess.run([sys.executable, "-m", "tunnel", "demo", "--packets", "200", "--quiet"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_an_unknown_tunnel_aead_is_refused_before_anything_runs() -> None:
    refused = _demo("openssl")
    assert refused.returncode == 2, refused.stderr
    assert "TUNNEL_AEAD='openssl': expected libcrypto or cryptography" in refused.stderr
    assert "Traceback" not in refused.stderr and "handshake" not in refused.stdout


@pytest.mark.parametrize("backend", BOTH)
def test_the_demo_runs_on_the_backend_asked_for(backend: str) -> None:
    backend_or_skip(backend)
    done = _demo(backend)
    assert done.returncode == 0, done.stderr
    assert f"AES-256-GCM (AEAD: {backend})" in done.stdout, done.stdout
    assert "400/400 delivered" in done.stdout and "0 corrupt" in done.stdout, done.stdout
