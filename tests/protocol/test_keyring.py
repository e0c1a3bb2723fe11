"""KeyRing: current, next and lame duck of one session's data keys."""

from __future__ import annotations

import os

from tunnel.protocol.datacipher import DataCipherKey, make_data_key
from tunnel.protocol.keyring import KeyRing
from tunnel.protocol.replay import ReplayWindow


def key(key_id: int) -> DataCipherKey:
    return make_data_key(cipher="AES-256-GCM", auth="SHA1", key2=os.urandom(256),
                         is_server=False, key_id=key_id, replay=ReplayWindow())


def test_first_key_becomes_current_later_ones_wait_as_next() -> None:
    ring = KeyRing()
    k0, k1 = key(0), key(1)
    assert ring.install(k0) is True
    assert ring.current is k0 and ring.next_id is None and ring.by_id[0] is k0
    assert ring.install(k1) is False
    assert ring.current is k0 and ring.next_id == 1 and ring.by_id[1] is k1
    assert ring.next_key(1) is k1 and ring.next_key(0) is None
    assert ring.in_use(0) and ring.in_use(1) and not ring.in_use(2)
    assert ring.rotations == 0 and ring.deadline() is None


def test_rotation_keeps_the_old_key_as_lame_duck_until_its_deadline() -> None:
    ring = KeyRing()
    k0, k1 = key(0), key(1)
    ring.install(k0)
    ring.install(k1)
    assert ring.rotate(k1, lame_duck_until=50.0) is True
    assert ring.current is k1 and ring.next_id is None and ring.lame_duck is k0
    assert ring.by_id[0] is k0  # still opens packets in flight
    assert ring.rotations == 1 and ring.deadline() == 50.0
    ring.expire(49.9)
    assert ring.by_id[0] is k0
    ring.expire(50.0)
    assert ring.by_id[0] is None and ring.lame_duck is None and ring.deadline() is None
    assert ring.current is k1


def test_a_second_rotation_drops_the_previous_lame_duck_at_once() -> None:
    ring = KeyRing()
    k0, k1, k2 = key(0), key(1), key(2)
    ring.install(k0)
    ring.install(k1)
    ring.rotate(k1, 100.0)
    ring.install(k2)
    ring.rotate(k2, 200.0)
    assert ring.by_id[0] is None and ring.lame_duck is k1 and ring.by_id[1] is k1
    assert ring.current is k2 and ring.rotations == 2 and ring.deadline() == 200.0


def test_rotating_to_the_current_key_changes_nothing() -> None:
    ring = KeyRing()
    k0 = key(0)
    ring.install(k0)
    assert ring.rotate(k0, 10.0) is False
    assert ring.lame_duck is None and ring.rotations == 0


def test_expired_lame_duck_with_a_reused_id_does_not_clear_the_new_key() -> None:
    ring = KeyRing()
    k1, k2, k1_again = key(1), key(2), key(1)
    ring.install(k1)
    ring.install(k2)
    ring.rotate(k2, 10.0)
    ring.free_slot(1)  # a new handshake on key_id 1 while the lame duck still holds it
    assert ring.by_id[1] is None
    ring.install(k1_again)
    ring.expire(10.0)  # the lame duck goes, the new key under its id stays
    assert ring.by_id[1] is k1_again and ring.next_id == 1


def test_free_slot_never_removes_the_current_key() -> None:
    ring = KeyRing()
    k0 = key(0)
    ring.install(k0)
    ring.free_slot(0)
    assert ring.by_id[0] is k0 and ring.current is k0
