"""Key-method-2 encode/decode against the layout and sizes of OPENVPN-WIRE.md section 6."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.protocol.errors import ProtocolError
from tunnel.protocol.keymethod2 import (
    MAX_KM2_LEN,
    KeyMethod2,
    decode_key_method2,
    encode_key_method2,
    new_key_method2,
)

SERVER_OPTIONS = (
    "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,"
    "tls-server"
)
CLIENT_OPTIONS = SERVER_OPTIONS.replace("tls-server", "tls-client")
# The verified stock 2.6.14 client peer-info (wire doc 6.2).
STOCK_PEER_INFO = (
    "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\n"
    "IV_CIPHERS=AES-256-GCM:CHACHA20-POLY1305\nIV_PROTO=990\n"
    "IV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"
)
R1 = bytes(range(32))
R2 = bytes(range(32, 64))
PM = bytes(range(100, 148))


def server_msg() -> KeyMethod2:
    return KeyMethod2(random1=R1, random2=R2, options=SERVER_OPTIONS)


def client_msg(**kw: str | None) -> KeyMethod2:
    return KeyMethod2(
        random1=R1,
        random2=R2,
        options=CLIENT_OPTIONS,
        pre_master=PM,
        peer_info=STOCK_PEER_INFO,
        **kw,
    )


# --- sizes and layout --------------------------------------------------------------------


def test_stock_server_message_is_178_bytes() -> None:
    data = encode_key_method2(server_msg(), from_client=False)
    assert len(SERVER_OPTIONS) + 1 == 101
    assert len(data) == 178 == 5 + 32 + 32 + 2 + 101 + 2 + 2 + 2
    assert data[:5] == b"\x00\x00\x00\x00\x02"
    assert data[5:37] == R1 and data[37:69] == R2
    assert data[69:71] == struct.pack("!H", 101)
    assert data[71:172] == SERVER_OPTIONS.encode() + b"\0"
    assert data[172:] == b"\x00\x00" * 3  # no username, password or peer-info


def test_stock_client_message_is_378_bytes() -> None:
    data = encode_key_method2(client_msg(), from_client=True)
    assert len(data) == 378
    assert data[5:53] == PM  # the pre_master comes first, client only
    assert data[53:85] == R1
    assert data[-(len(STOCK_PEER_INFO) + 1) :] == STOCK_PEER_INFO.encode() + b"\0"


def test_round_trip_both_roles() -> None:
    msg = client_msg(username="alice", password="s3cret")
    assert decode_key_method2(encode_key_method2(msg, from_client=True), from_client=True) == msg
    smsg = server_msg()
    assert (
        decode_key_method2(encode_key_method2(smsg, from_client=False), from_client=False) == smsg
    )


def test_empty_strings_are_written_as_zero_length() -> None:
    msg = server_msg()
    msg.username = ""
    msg.password = ""
    msg.peer_info = ""
    data = encode_key_method2(msg, from_client=False)
    assert data.endswith(b"\x00\x00" * 3)
    decoded = decode_key_method2(data, from_client=False)
    assert (decoded.username, decoded.password, decoded.peer_info) == (None, None, None)


def test_single_nul_form_is_accepted() -> None:
    base = encode_key_method2(server_msg(), from_client=False)[:-6]
    decoded = decode_key_method2(base + b"\x00\x01\x00" * 3, from_client=False)
    assert (decoded.username, decoded.password, decoded.peer_info) == ("", "", "")


def test_missing_trailing_fields_are_none() -> None:
    full = encode_key_method2(server_msg(), from_client=False)
    after_options = full[:-6]
    for cut in (0, 2, 4):
        decoded = decode_key_method2(after_options + full[-6:][:cut], from_client=False)
        assert decoded.options == SERVER_OPTIONS
        assert decoded.peer_info is None


def test_trailing_bytes_after_peer_info_are_ignored() -> None:
    data = encode_key_method2(client_msg(), from_client=True)
    assert decode_key_method2(data + b"PUSH_REQUEST\0", from_client=True) == client_msg()


def test_key_method_flags_in_high_bits_are_ignored() -> None:
    data = bytearray(encode_key_method2(server_msg(), from_client=False))
    data[4] = 0xF2
    assert decode_key_method2(bytes(data), from_client=False).options == SERVER_OPTIONS


@pytest.mark.parametrize("method", [0x00, 0x01, 0x03, 0x13, 0x20])
def test_other_key_methods_refused(method: int) -> None:
    data = bytearray(encode_key_method2(server_msg(), from_client=False))
    data[4] = method
    with pytest.raises(ProtocolError, match="unsupported key method"):
        decode_key_method2(bytes(data), from_client=False)


def test_string_terminator_handling_matches_stock() -> None:
    # Stock overwrites the last byte with NUL and treats the field as a C string.
    head = encode_key_method2(server_msg(), from_client=False)[:69]
    opts = b"abcX"  # no NUL: the X is lost
    assert (
        decode_key_method2(head + struct.pack("!H", 4) + opts, from_client=False).options == "abc"
    )
    opts = b"ab\0cd\0"  # embedded NUL: the string ends there
    assert decode_key_method2(head + struct.pack("!H", 6) + opts, from_client=False).options == "ab"


def test_limits_on_decode() -> None:
    head = encode_key_method2(server_msg(), from_client=False)[:69]
    with pytest.raises(ProtocolError, match="options"):
        decode_key_method2(head + struct.pack("!H", 513) + b"a" * 512 + b"\0", from_client=False)
    ok = head + struct.pack("!H", 512) + b"a" * 511 + b"\0"
    assert len(decode_key_method2(ok, from_client=False).options) == 511
    with pytest.raises(ProtocolError, match="username"):
        decode_key_method2(ok + struct.pack("!H", 4097) + b"u" * 4097, from_client=False)


def test_truncations_are_protocol_errors() -> None:
    data = encode_key_method2(client_msg(username="u", password="p"), from_client=True)
    for n in range(len(data)):
        try:
            decode_key_method2(data[:n], from_client=True)
        except ProtocolError:
            continue
        # The only prefixes that parse end exactly on a field boundary after the options.
        assert n >= 5 + 48 + 64 + 2 + len(CLIENT_OPTIONS) + 1


def test_wrong_role_is_an_error_or_garbage_never_a_crash() -> None:
    data = encode_key_method2(server_msg(), from_client=False)
    with pytest.raises(ProtocolError):
        decode_key_method2(data, from_client=True)  # 48 bytes short for a client message


def test_repr_hides_pre_master_and_password() -> None:
    msg = client_msg(username="alice", password="hunter2-password")
    text = repr(msg)
    assert "hunter2" not in text
    assert PM.hex() not in text and repr(PM) not in text
    assert "alice" in text


def test_non_utf8_credentials_round_trip_byte_exact() -> None:
    head = encode_key_method2(server_msg(), from_client=False)[:-6]
    data = head + struct.pack("!H", 3) + b"\xff\xfe\0" + struct.pack("!H", 2) + b"\xfd\0"
    decoded = decode_key_method2(data, from_client=False)
    assert decoded.username is not None and decoded.password is not None
    assert decoded.username != decoded.password
    assert encode_key_method2(decoded, from_client=False).startswith(data)


# --- encode-side validation --------------------------------------------------------------


def test_encode_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="pre_master"):
        encode_key_method2(server_msg(), from_client=True)
    with pytest.raises(ValueError, match="random"):
        encode_key_method2(KeyMethod2(random1=b"x", random2=R2, options=""), from_client=False)
    bad = server_msg()
    bad.options = "a\0b"
    with pytest.raises(ValueError, match="NUL"):
        encode_key_method2(bad, from_client=False)
    bad.options = "o" * 512
    with pytest.raises(ValueError, match="options"):
        encode_key_method2(bad, from_client=False)


def test_encode_refuses_more_than_one_read() -> None:
    msg = server_msg()
    msg.peer_info = "IV_X=" + "y" * (MAX_KM2_LEN - 178 - 6)
    assert len(encode_key_method2(msg, from_client=False)) == MAX_KM2_LEN
    msg.peer_info += "z"
    with pytest.raises(ValueError, match="2048"):
        encode_key_method2(msg, from_client=False)


def test_new_key_method2_fresh_randoms() -> None:
    a = new_key_method2(from_client=True, options=CLIENT_OPTIONS, peer_info="IV_VER=x\n")
    b = new_key_method2(from_client=True, options=CLIENT_OPTIONS)
    s = new_key_method2(from_client=False, options=SERVER_OPTIONS)
    assert a.pre_master is not None and len(a.pre_master) == 48
    assert s.pre_master is None
    assert len(a.random1) == len(a.random2) == 32
    assert a.random1 != b.random1 and a.random2 != a.random1
    assert len(encode_key_method2(s, from_client=False)) == 178


# --- never anything but ProtocolError ----------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=400), from_client=st.booleans())
def test_decode_random_input_only_protocol_error(data: bytes, from_client: bool) -> None:
    with contextlib.suppress(ProtocolError):
        decode_key_method2(data, from_client=from_client)


@settings(deadline=None, max_examples=200)
@given(
    tail=st.binary(max_size=300),
    method=st.sampled_from([0x02, 0x12, 0x01]),
    from_client=st.booleans(),
)
def test_decode_valid_prefix_random_tail(tail: bytes, method: int, from_client: bool) -> None:
    head = b"\0\0\0\0" + bytes([method]) + b"r" * (48 * from_client + 64)
    with contextlib.suppress(ProtocolError):
        decode_key_method2(head + tail, from_client=from_client)


@settings(deadline=None, max_examples=100)
@given(
    options=st.text(
        st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=100
    ),
    username=st.none()
    | st.text(
        st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]),
        min_size=1,
        max_size=50,
    ),
    peer_info=st.none() | st.from_regex(r"(IV_[A-Z]{1,8}=[a-z0-9]{0,8}\n){1,5}", fullmatch=True),
    from_client=st.booleans(),
)
def test_round_trip_property(
    options: str, username: str | None, peer_info: str | None, from_client: bool
) -> None:
    msg = KeyMethod2(
        random1=R1,
        random2=R2,
        options=options,
        username=username,
        password=username,
        peer_info=peer_info,
        pre_master=PM if from_client else None,
    )
    assert (
        decode_key_method2(
            encode_key_method2(msg, from_client=from_client), from_client=from_client
        )
        == msg
    )


def test_every_truncation_is_a_protocol_error_naming_the_field() -> None:
    """The reader's Buffer bounds: a cut anywhere up to the end of the options string is a
    ProtocolError naming the field it fell in; a cut after it (an older peer that stops
    there, or a cut in a later string) is absent fields or the field's error, never more."""
    data = encode_key_method2(client_msg(username="u", password="p"), from_client=True)
    options_end = 5 + 48 + 32 + 32 + 2 + len(CLIENT_OPTIONS) + 1
    fields = ["header"] * 4 + ["key method"] + ["pre_master"] * 48 + ["random1"] * 32 + [
        "random2"] * 32 + ["options string"] * (2 + len(CLIENT_OPTIONS) + 1)
    assert len(fields) == options_end
    for cut in range(len(data)):
        if cut < options_end:
            with pytest.raises(ProtocolError, match=fields[cut]):
                decode_key_method2(data[:cut], from_client=True)
        elif cut == options_end:
            msg = decode_key_method2(data[:cut], from_client=True)
            assert (msg.username, msg.password, msg.peer_info) == (None, None, None)
        else:
            with contextlib.suppress(ProtocolError):
                decode_key_method2(data[:cut], from_client=True)
