"""The stateless HMAC cookie: slot window, binding to address/port/client sid, key handling."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.protocol.cookie import CookieJar

KEY = bytes(range(32))
ADDR = ("192.0.2.10", 40000)
CSID = bytes.fromhex("fa99b04cc87dcc2e")


def jar() -> CookieJar:
    return CookieJar(KEY)


def test_default_slot_is_30_seconds() -> None:
    assert jar().slot_length == 30.0
    assert CookieJar(KEY, hand_window=20).slot_length == 10.0
    assert CookieJar(KEY, hand_window=1).slot_length == 1.0


def test_session_id_is_the_documented_hmac() -> None:
    now = 1000.0
    slot = int(now // 30)
    message = slot.to_bytes(4, "big") + bytes([192, 0, 2, 10]) + (40000).to_bytes(2, "big") + CSID
    expected = hmac.new(KEY, message, hashlib.sha256).digest()[:8]
    assert jar().server_session_id(ADDR, CSID, now) == expected
    assert jar().session_id_for(ADDR, CSID, now) == expected


def test_same_inputs_same_id_within_a_slot() -> None:
    j = jar()
    assert j.server_session_id(ADDR, CSID, 30.0) == j.server_session_id(ADDR, CSID, 59.99)
    assert j.server_session_id(ADDR, CSID, 59.99) != j.server_session_id(ADDR, CSID, 60.0)


@pytest.mark.parametrize(
    "issued_slot_offset, accepted",
    [
        (-3, False),
        (-2, True),
        (-1, True),
        (0, True),
        (1, True),
        (2, False),
    ],
)
def test_slot_window(issued_slot_offset: int, accepted: bool) -> None:
    """Issued in slot s + offset, checked in slot s: offsets -2..+1 pass (check_session_id_hmac)."""
    j = jar()
    verify_at = 100 * 30.0 + 7.0
    issued_at = verify_at + issued_slot_offset * 30.0
    sid = j.server_session_id(ADDR, CSID, issued_at)
    assert j.verify(ADDR, CSID, sid, verify_at) is accepted


def test_slot_boundaries_exactly() -> None:
    j = jar()
    sid = j.server_session_id(ADDR, CSID, 3000.0)  # first instant of slot 100
    assert j.verify(ADDR, CSID, sid, 3000.0 + 3 * 30 - 0.001)  # last instant of slot 102
    assert not j.verify(ADDR, CSID, sid, 3000.0 + 3 * 30)  # slot 103
    assert j.verify(ADDR, CSID, sid, 3000.0 - 30)  # slot 99: a clock stepped back
    assert not j.verify(ADDR, CSID, sid, 3000.0 - 30 - 0.001)  # slot 98


@pytest.mark.parametrize(
    "addr, csid",
    [
        (("192.0.2.11", 40000), CSID),  # other IP
        (("192.0.2.10", 40001), CSID),  # other port
        (ADDR, bytes.fromhex("fa99b04cc87dcc2f")),  # other client sid
        (("::ffff:192.0.2.10", 40000), CSID),  # a v4-mapped v6 address is a different sockaddr
    ],
)
def test_bound_to_address_port_and_client_sid(addr: tuple[str, int], csid: bytes) -> None:
    j = jar()
    sid = j.server_session_id(ADDR, CSID, 500.0)
    assert j.verify(ADDR, CSID, sid, 500.0)
    assert not j.verify(addr, csid, sid, 500.0)


def test_ipv6_addresses() -> None:
    j = jar()
    addr = ("2001:db8::1", 1194)
    sid = j.server_session_id(addr, CSID, 10.0)
    assert j.verify(addr, CSID, sid, 10.0)
    assert not j.verify(("2001:db8::2", 1194), CSID, sid, 10.0)


def test_different_keys_give_different_ids() -> None:
    a = CookieJar(KEY).server_session_id(ADDR, CSID, 0.0)
    b = CookieJar(bytes(32)).server_session_id(ADDR, CSID, 0.0)
    assert a != b
    # A per-process random key when none is given.
    assert CookieJar().server_session_id(ADDR, CSID, 0.0) != CookieJar().server_session_id(
        ADDR, CSID, 0.0
    )


def test_malformed_inputs() -> None:
    j = jar()
    sid = j.server_session_id(ADDR, CSID, 0.0)
    assert not j.verify(ADDR, CSID, sid[:7], 0.0)
    assert not j.verify(ADDR, CSID[:7], sid, 0.0)
    assert not j.verify(("not-an-ip", 1), CSID, sid, 0.0)
    assert not j.verify(ADDR, CSID, bytes(8), 0.0)
    with pytest.raises(ValueError):
        j.server_session_id(ADDR, CSID[:4], 0.0)
    with pytest.raises(ValueError):
        j.server_session_id(("host.example", 1), CSID, 0.0)
    with pytest.raises(ValueError):
        CookieJar(b"short")
    with pytest.raises(ValueError):
        CookieJar(KEY, hand_window=0)


def test_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the HMAC to return zeros: the id must still be non-zero and still verify."""

    def zero_digest(key: bytes, msg: bytes, digest: object) -> bytes:
        return bytes(32)

    monkeypatch.setattr(hmac, "digest", zero_digest)  # undone after the test
    j = jar()
    sid = j.server_session_id(ADDR, CSID, 0.0)
    assert sid != bytes(8)
    assert sid == bytes(7) + b"\x01"
    assert j.verify(ADDR, CSID, sid, 0.0)


def test_repr_hides_key() -> None:
    text = repr(CookieJar(KEY))
    assert KEY.hex() not in text and repr(KEY) not in text


@settings(deadline=None, max_examples=100)
@given(
    now=st.floats(min_value=0, max_value=2**40, allow_nan=False),
    port=st.integers(0, 65535),
    csid=st.binary(min_size=8, max_size=8),
)
def test_issued_ids_verify_immediately(now: float, port: int, csid: bytes) -> None:
    j = jar()
    sid = j.server_session_id(("198.51.100.7", port), csid, now)
    assert len(sid) == 8 and sid != bytes(8)
    assert j.verify(("198.51.100.7", port), csid, sid, now)
