"""DataCipherKey (datakey.py): the state both data-channel kinds share, the same for each kind."""

from __future__ import annotations

import os

import pytest

from core import BufferPool, FrameBuilder
from tunnel.protocol.cbc import CbcHmacKey
from tunnel.protocol.constants import OPCODE_SHIFT, Opcode
from tunnel.protocol.datachannel import DataKey
from tunnel.protocol.datacipher import make_data_key, register_data_ciphers
from tunnel.protocol.datakey import PACKET_ID_WRAP_TRIGGER, DataCipherKey, PacketIdExhausted
from tunnel.protocol.replay import ReplayWindow

KINDS = [("AES-256-GCM", DataKey), ("AES-256-CBC", CbcHmacKey)]


def pair(cipher: str, key_id: int = 3) -> tuple[DataCipherKey, DataCipherKey]:
    key2 = os.urandom(256)
    return tuple(  # type: ignore[return-value]
        make_data_key(cipher=cipher, auth="SHA256", key2=key2, is_server=server, key_id=key_id,
                      replay=ReplayWindow())
        for server in (False, True)
    )


@pytest.fixture(scope="module")
def pool() -> BufferPool:
    builder = FrameBuilder(1500)
    register_data_ciphers(builder, ["AES-256-GCM", "AES-256-CBC"], "SHA256")
    return BufferPool(builder.finalize(), 4)


@pytest.mark.parametrize(("cipher", "kind"), KINDS)
def test_both_kinds_are_data_cipher_keys_with_the_shared_state(cipher: str, kind: type) -> None:
    sender, _ = pair(cipher)
    assert isinstance(sender, kind) and isinstance(sender, DataCipherKey)
    assert (sender.key_id, sender.cipher, sender.send_packet_id) == (3, cipher, 0)
    assert (sender.sealed, sender.opened, sender.auth_failures, sender.replays,
            sender.short, sender.misrouted) == (0, 0, 0, 0, 0, 0)
    assert not sender.needs_renegotiation
    assert not hasattr(sender, "__dict__")  # slots only: no per-instance dict on the hot path


@pytest.mark.parametrize(("cipher", "kind"), KINDS)
def test_key_id_is_checked_before_anything_else(cipher: str, kind: type) -> None:
    with pytest.raises(ValueError, match=r"key_id 8 outside 0\.\.7"):
        pair(cipher, key_id=8)


@pytest.mark.parametrize(("cipher", "kind"), KINDS)
def test_opcodes_and_counters_move_the_same_way(pool: BufferPool, cipher: str,
                                                kind: type) -> None:
    sender, receiver = pair(cipher)
    for peer_id, op in ((5, Opcode.P_DATA_V2), (None, Opcode.P_DATA_V1)):
        buf = pool.acquire()
        try:
            buf.append(b"payload")
            sender.seal(buf, peer_id)
            assert buf.data[0] == (op << OPCODE_SHIFT) | 3
            assert receiver.open(buf, 1.0) and bytes(buf.data) == b"payload"
        finally:
            pool.release(buf)
    assert (sender.sealed, sender.send_packet_id, receiver.opened) == (2, 2, 2)


@pytest.mark.parametrize(("cipher", "kind"), KINDS)
def test_packet_id_limits_hold_for_each_kind(pool: BufferPool, cipher: str, kind: type) -> None:
    sender, _ = pair(cipher)
    sender._send_pid = PACKET_ID_WRAP_TRIGGER  # white-box: skip 4 billion packets
    assert sender.needs_renegotiation
    sender._send_pid = 0xFFFFFFFF
    buf = pool.acquire()
    try:
        buf.append(b"x")
        with pytest.raises(PacketIdExhausted, match="roll over"):
            sender.seal(buf, 1)
        assert bytes(buf.data) == b"x" and sender.send_packet_id == 0xFFFFFFFF
    finally:
        pool.release(buf)


@pytest.mark.parametrize(("cipher", "kind"), KINDS)
def test_repr_names_the_kind_and_shows_no_key_material(cipher: str, kind: type) -> None:
    sender, _ = pair(cipher)
    text = repr(sender)
    assert text.startswith(f"<{kind.__name__} key_id=3 cipher={cipher}")
    assert "sealed=0" in text and "misrouted=0" in text
    if kind is CbcHmacKey:
        assert " auth=SHA256 send_pid=0" in text
    for secret in ("_hmac_out", "_send_nonce", "bytes"):
        assert secret not in text
