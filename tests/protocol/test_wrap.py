"""Control-channel wraps against datagrams captured from the stock openvpn (wrap_vectors.py):
exact bytes in (open + parse), exact bytes out (seal with the captured packet-id and time)."""

from __future__ import annotations

import pytest

from core import BoundsError, Buffer
from tunnel.protocol.codec import CONTROL_HEADER_MAX, parse_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.wrap import (
    PLAIN,
    ClientKey,
    ControlWrap,
    KeyFileError,
    LongReplayWindow,
    Opened,
    ServerKey,
    TlsAuthWrap,
    TlsCryptV2ClientWrap,
    TlsCryptV2ServerWrap,
    TlsCryptWrap,
    format_static_key,
    parse_static_key,
)
from tunnel.protocol.wrap.base import control_frame
from tunnel.protocol.wrap.tls_crypt_v2 import EARLY_NEG_TLV
from tunnel.protocol.wrap.v2keys import generate_client_key, unwrap_client_key, wrap_client_key

from . import wrap_vectors as v

AUTH1_KEY = parse_static_key(v.TLS_AUTH_SHA1_KEY_FILE)
AUTH512_KEY = parse_static_key(v.TLS_AUTH_SHA512_NODIR_KEY_FILE)
CRYPT_KEY = parse_static_key(v.TLS_CRYPT_KEY_FILE)


def pairs() -> list[tuple[str, ControlWrap, ControlWrap, list[bytes], list[bytes]]]:
    """(name, server wrap, client wrap, client->server datagrams, server->client datagrams)."""
    return [
        ("tls-auth-sha1", TlsAuthWrap(AUTH1_KEY, 0), TlsAuthWrap(AUTH1_KEY, 1),
         [v.TLS_AUTH_SHA1_CLIENT_RESET, v.TLS_AUTH_SHA1_CLIENT_HELLO],
         [v.TLS_AUTH_SHA1_SERVER_RESET, v.TLS_AUTH_SHA1_SERVER_SECOND]),
        ("tls-auth-sha512", TlsAuthWrap(AUTH512_KEY, None, "SHA512"),
         TlsAuthWrap(AUTH512_KEY, None, "sha-512"),
         [v.TLS_AUTH_SHA512_NODIR_CLIENT_RESET, v.TLS_AUTH_SHA512_NODIR_CLIENT_HELLO],
         [v.TLS_AUTH_SHA512_NODIR_SERVER_RESET, v.TLS_AUTH_SHA512_NODIR_SERVER_SECOND]),
        ("tls-crypt", TlsCryptWrap.from_key(CRYPT_KEY, server=True),
         TlsCryptWrap.from_key(CRYPT_KEY, server=False),
         [v.TLS_CRYPT_CLIENT_RESET, v.TLS_CRYPT_CLIENT_HELLO],
         [v.TLS_CRYPT_SERVER_RESET, v.TLS_CRYPT_SERVER_SECOND]),
    ]


CASES = pairs()
IDS = [case[0] for case in CASES]


def buffer_of(wrap: ControlWrap, datagram: bytes) -> Buffer:
    frame = control_frame(wrap)
    buf = Buffer(frame.buffer_size)
    buf.reset(frame.headroom)
    buf.append(datagram)
    return buf


def roundtrip(receiver: ControlWrap, sender: ControlWrap, datagram: bytes) -> bytes:
    """Open a captured datagram, check it parses, seal it again; returns the plain packet."""
    buf = buffer_of(receiver, datagram)
    opened = receiver.open(buf)
    assert opened is not None, "the stock datagram failed our check"
    plain = bytes(buf.data)
    parse_control(plain)
    assert plain[0] == datagram[0] and plain[1:9] == datagram[1:9]  # op|kid and sid in clear
    again = buffer_of(sender, plain)
    sender.seal(again, opened.packet_id, opened.timestamp)
    assert bytes(again.data) == datagram
    return plain


@pytest.mark.parametrize(("name", "server", "client", "up", "down"), CASES, ids=IDS)
def test_stock_datagrams_open_and_seal_byte_for_byte(
    name: str, server: ControlWrap, client: ControlWrap, up: list[bytes], down: list[bytes]
) -> None:
    reset = roundtrip(server, client, up[0])
    assert parse_control(reset).opcode is Opcode.P_CONTROL_HARD_RESET_CLIENT_V2
    hello = parse_control(roundtrip(server, client, up[1]))
    assert hello.opcode is Opcode.P_CONTROL_V1 and hello.payload[:1] == b"\x16"  # TLS handshake
    answer = parse_control(roundtrip(client, server, down[0]))
    assert answer.opcode is Opcode.P_CONTROL_HARD_RESET_SERVER_V2 and answer.acks == (0,)
    roundtrip(client, server, down[1])


@pytest.mark.parametrize(("name", "server", "client", "up", "down"), CASES, ids=IDS)
def test_stock_packet_ids(
    name: str, server: ControlWrap, client: ControlWrap, up: list[bytes], down: list[bytes]
) -> None:
    """Long-form packet-ids: the client counts from 1; the 2.6 server's stateless reset is 1."""
    ids = []
    for receiver, datagram in ((server, up[0]), (server, up[1]), (client, down[0])):
        opened = receiver.open(buffer_of(receiver, datagram))
        assert opened is not None
        ids.append(opened.packet_id)
        assert opened.timestamp > 1_700_000_000  # Unix time of the capture
    assert ids == [1, 2, 1]


@pytest.mark.parametrize(("name", "server", "client", "up", "down"), CASES, ids=IDS)
def test_wrong_direction_or_corrupt_bytes_are_refused(
    name: str, server: ControlWrap, client: ControlWrap, up: list[bytes], down: list[bytes]
) -> None:
    if name != "tls-auth-sha512":  # the bidirectional key is the same both ways
        assert client.open(buffer_of(client, up[0])) is None
        assert server.open(buffer_of(server, down[0])) is None
    for index in (0, 9, 20, len(up[1]) - 1):
        bad = bytearray(up[1])
        bad[index] ^= 0x01
        assert server.open(buffer_of(server, bytes(bad))) is None, index
    for cut in (0, 9, server.overhead + 8, len(up[0]) - 1):
        assert server.open(buffer_of(server, up[0][:cut])) is None, cut


def test_other_key_refused() -> None:
    other = TlsAuthWrap(CRYPT_KEY, 0)
    assert other.open(buffer_of(other, v.TLS_AUTH_SHA1_CLIENT_RESET)) is None
    crypt = TlsCryptWrap.from_key(AUTH1_KEY, server=True)
    assert crypt.open(buffer_of(crypt, v.TLS_CRYPT_CLIENT_RESET)) is None
    sha256 = TlsAuthWrap(AUTH1_KEY, 0, "SHA256")
    assert sha256.open(buffer_of(sha256, v.TLS_AUTH_SHA1_CLIENT_RESET)) is None


def test_channel_refuses_a_replayed_datagram() -> None:
    server = TlsAuthWrap(AUTH1_KEY, 0)
    channel = server.channel()
    assert channel.open(buffer_of(server, v.TLS_AUTH_SHA1_CLIENT_RESET), 10.0)
    assert channel.open(buffer_of(server, v.TLS_AUTH_SHA1_CLIENT_HELLO), 10.0)
    assert not channel.open(buffer_of(server, v.TLS_AUTH_SHA1_CLIENT_HELLO), 10.1)
    assert not channel.open(buffer_of(server, v.TLS_AUTH_SHA1_CLIENT_RESET), 10.2)
    assert channel.replayed == 2 and channel.dropped == 0


def test_long_replay_window() -> None:
    window = LongReplayWindow(64, 15)
    assert window.accept(2, 100, 0.0)
    assert window.accept(1, 100, 0.0)  # reordered, still in the window
    assert not window.accept(1, 100, 0.0)
    assert not window.accept(5, 99, 0.0)  # time went back
    assert window.accept(1, 101, 0.0)  # a new time starts a new window
    assert not window.accept(0, 101, 0.0)  # id 0 is never valid


def test_channel_sends_long_packet_ids_from_one() -> None:
    client = TlsAuthWrap(AUTH1_KEY, 1)
    server = TlsAuthWrap(AUTH1_KEY, 0)
    channel = client.channel(clock_offset=1_700_000_000.0)
    plain = roundtrip(server, client, v.TLS_AUTH_SHA1_CLIENT_RESET)
    seen = []
    for now in (5.0, 9.0):
        buf = buffer_of(client, plain)
        channel.seal(buf, now)
        opened = server.open(buf)
        assert opened is not None
        seen.append((opened.packet_id, opened.timestamp))
    # The time is taken once, at the first packet (packet_id_send_update()).
    assert seen == [(1, 1_700_000_005), (2, 1_700_000_005)]


def test_plain_wrap_changes_nothing() -> None:
    buf = buffer_of(PLAIN, b"\x38" + bytes(range(1, 9)) + b"\x00" + bytes(4))
    before = bytes(buf.data)
    PLAIN.seal(buf, 1, 1)
    assert bytes(buf.data) == before and PLAIN.open(buf) is not None


def test_frame_registers_the_wrap_headroom() -> None:
    """The control frame: the packet header's headroom (the codec prepends it in front of the
    TLS payload), then the wrap's (it prepends its own in front of that)."""
    frame = control_frame(TlsAuthWrap(AUTH512_KEY, None, "SHA512"))
    assert frame.overhead == CONTROL_HEADER_MAX + 64 + 8
    assert [(r.name, r.headroom) for r in frame.registrations] == [
        ("control packet header", CONTROL_HEADER_MAX), ("control-wrap tls-auth SHA512", 72)]
    assert frame.headroom >= CONTROL_HEADER_MAX + 72


# -- key files ---------------------------------------------------------------------------------


def test_key_file_written_as_stock_writes_it() -> None:
    for text in (v.TLS_AUTH_SHA1_KEY_FILE, v.TLS_CRYPT_KEY_FILE):
        assert format_static_key(parse_static_key(text)) == text


@pytest.mark.parametrize(("text", "line", "words"), [
    ("hello\n", 0, "not an OpenVPN static key"),
    ("\n".join(v.TLS_CRYPT_KEY_FILE.splitlines()[:10]) + "\n", 10, "truncated"),
    (v.TLS_CRYPT_KEY_FILE.replace(v.TLS_CRYPT_KEY_FILE.splitlines()[6],
                                  "zz" + v.TLS_CRYPT_KEY_FILE.splitlines()[6][2:]), 7, "non-hex"),
    ("\n".join(v.TLS_CRYPT_KEY_FILE.splitlines()[:12] + v.TLS_CRYPT_KEY_FILE.splitlines()[-1:])
     + "\n", 13, "8 bytes, 256 expected"),
])
def test_bad_key_files(text: str, line: int, words: str) -> None:
    with pytest.raises(KeyFileError) as info:
        parse_static_key(text)
    assert info.value.line == line
    assert words in info.value.reason


def test_largest_datagrams_match_stock() -> None:
    """Stock's largest control datagrams (the certificate flight): 1222 bytes with tls-auth
    (captured: TLS_AUTH_SHA1 run), 1206 with tls-crypt (it reserves a cipher block more)."""
    from tunnel.runtime import session_settings

    from .harness import tls_settings

    for wrap, largest in ((TlsAuthWrap(AUTH1_KEY, 0), 1222),
                          (TlsCryptWrap.from_key(CRYPT_KEY, server=True), 1206)):
        s = session_settings(is_client=False, tls=tls_settings("server"), control_wrap=wrap,
                             dyn_tls_crypt=False)
        assert s.max_control_datagram + wrap.overhead == largest
        # With dynamic tls-crypt a renegotiation may carry the 40-byte tls-crypt wrap instead:
        # every packet is sized for the larger of the two, so none exceeds tls-mtu.
        s = session_settings(is_client=False, tls=tls_settings("server"), control_wrap=wrap,
                             dyn_tls_crypt=True)
        assert s.max_control_datagram + max(wrap.overhead, 40) <= 1206


# -- tls-crypt-v2 --------------------------------------------------------------------------------


def v2_wraps() -> tuple[TlsCryptV2ServerWrap, TlsCryptV2ClientWrap]:
    server = TlsCryptV2ServerWrap(ServerKey.parse(v.TLS_CRYPT_V2_SERVER_KEY_FILE))
    client = TlsCryptV2ClientWrap(ClientKey.parse(v.TLS_CRYPT_V2_CLIENT_KEY_FILE))
    return server, client


def test_v2_key_files_written_as_stock_writes_them() -> None:
    assert ServerKey.parse(v.TLS_CRYPT_V2_SERVER_KEY_FILE).pem() == v.TLS_CRYPT_V2_SERVER_KEY_FILE
    client = ClientKey.parse(v.TLS_CRYPT_V2_CLIENT_KEY_FILE)
    assert client.pem() == v.TLS_CRYPT_V2_CLIENT_KEY_FILE
    server = ServerKey.parse(v.TLS_CRYPT_V2_SERVER_KEY_FILE)
    assert unwrap_client_key(server, client.wkc) == (client.key, b"\x00vector")
    # Our wrapping of the same key and metadata is stock's, byte for byte (SIV: deterministic).
    assert wrap_client_key(server, client.key, b"\x00vector") == client.wkc


def test_v2_stock_reset_opens_statelessly_and_seals_byte_for_byte() -> None:
    server, client = v2_wraps()
    buf = buffer_of(server, v.TLS_CRYPT_V2_CLIENT_RESET_V3)
    opened = server.open(buf)
    assert opened is not None
    assert opened.metadata == b"\x00vector" and opened.early_negotiation
    assert opened.packet_id == 0x0F000001  # early negotiation: EARLY_NEG_START + 1
    plain = bytes(buf.data)
    assert parse_control(plain).opcode is Opcode.P_CONTROL_HARD_RESET_CLIENT_V3
    assert server.admit(opened, 0) is None
    again = buffer_of(client, plain)
    client.seal(again, opened.packet_id, opened.timestamp)
    assert bytes(again.data) == v.TLS_CRYPT_V2_CLIENT_RESET_V3  # tls-crypt part + WKc

    # The stock server's stateless answer: our per-client wrap makes the same bytes, and the
    # client side sees the request to resend its key.
    answer = buffer_of(client, v.TLS_CRYPT_V2_SERVER_RESET)
    got = client.open(answer)
    assert got is not None and got.packet_id == 1
    assert isinstance(got.wrap, TlsCryptV2ClientWrap) and got.wrap.resend_wkc
    reset = parse_control(answer.data)
    assert reset.opcode is Opcode.P_CONTROL_HARD_RESET_SERVER_V2 and reset.payload == EARLY_NEG_TLV
    resealed = buffer_of(opened.wrap, bytes(answer.data))
    opened.wrap.seal(resealed, got.packet_id, got.timestamp)
    assert bytes(resealed.data) == v.TLS_CRYPT_V2_SERVER_RESET


def test_v2_stock_wkc_packet() -> None:
    """The stock client's ClientHello as P_CONTROL_WKC_V1: opened without state, presented as
    P_CONTROL_V1; the resending client wrap makes the same bytes from it."""
    server, client = v2_wraps()
    buf = buffer_of(server, v.TLS_CRYPT_V2_CLIENT_WKC)
    opened = server.open(buf)
    assert opened is not None and not opened.early_negotiation
    packet = parse_control(buf.data)
    assert packet.opcode is Opcode.P_CONTROL_V1 and packet.packet_id == 1
    assert packet.acks == (0,) and packet.payload[:1] == b"\x16"
    resending = TlsCryptV2ClientWrap(client.client_key, resend_wkc=True)
    again = buffer_of(resending, bytes(buf.data))
    resending.seal(again, opened.packet_id, opened.timestamp)
    assert bytes(again.data) == v.TLS_CRYPT_V2_CLIENT_WKC
    # Once the session has the key, a resent WKC_V1 still opens (its WKc is ignored).
    peer = opened.wrap
    assert peer.open(buffer_of(peer, v.TLS_CRYPT_V2_CLIENT_WKC)) is not None
    answer = buffer_of(client, v.TLS_CRYPT_V2_SERVER_SECOND)
    assert client.open(answer) is not None


def test_v2_client_key_for_another_server_key_is_refused() -> None:
    other = TlsCryptV2ServerWrap(ServerKey.generate())
    assert other.open(buffer_of(other, v.TLS_CRYPT_V2_CLIENT_RESET_V3)) is None
    server, _client = v2_wraps()
    # Not wrapped with a client key at all (a plain or tls-crypt packet): refused.
    assert server.open(buffer_of(server, v.TLS_CRYPT_CLIENT_RESET)) is None
    for cut in (1, 2, 100, len(v.TLS_CRYPT_V2_CLIENT_RESET_V3) - 1):
        data = v.TLS_CRYPT_V2_CLIENT_RESET_V3
        assert server.open(buffer_of(server, data[:cut] + data[cut + 1:])) is None, cut


def test_v2_max_age_and_verifier() -> None:
    key = ServerKey.parse(v.TLS_CRYPT_V2_SERVER_KEY_FILE)
    seen: list[tuple[int, bytes]] = []

    def verify(kind: int, value: bytes) -> bool:
        seen.append((kind, value))
        return value != b"vector"

    refusing = TlsCryptV2ServerWrap(key, verifier=verify)
    opened = refusing.open(buffer_of(refusing, v.TLS_CRYPT_V2_CLIENT_RESET_V3))
    assert opened is not None
    assert refusing.admit(opened, 0) == "tls-crypt-v2-verify refused the client key"
    assert seen == [(0, b"vector")]
    aged = TlsCryptV2ServerWrap(key, max_age_days=30)
    assert "no timestamp" in str(aged.admit(opened, 0))
    client = generate_client_key(key, user_metadata=None, now=1_000_000)
    stamped = Opened(1, 1, aged, metadata=unwrap_client_key(key, client.wkc)[1])  # type: ignore[index]
    assert aged.admit(stamped, 1_000_000 + 29 * 86400) is None
    assert "too old" in str(aged.admit(stamped, 1_000_000 + 31 * 86400))


def test_v2_client_datagrams_stay_within_tls_mtu() -> None:
    from tunnel.runtime import session_settings

    from .harness import tls_settings

    _server, client = v2_wraps()
    s = session_settings(is_client=True, tls=tls_settings("client"), control_wrap=client)
    assert s.max_control_datagram + client.overhead + len(client.client_key.wkc) <= 1222


# -- Buffer bounds: a refused packet or a seal without room leaves the buffer as it was ---------


def _state(buf: Buffer) -> tuple[int, int, bytes]:
    return buf.offset, len(buf), bytes(buf.data)


def _all_wire() -> list[tuple[str, ControlWrap, bytes]]:
    """(name, receiving wrap, a stock datagram it opens)."""
    server, client = v2_wraps()
    cases = [(name, srv, up[1]) for name, srv, _cli, up, _down in CASES]
    cases += [(name, cli, down[0]) for name, _srv, cli, _up, down in CASES]
    cases += [("v2-server", server, v.TLS_CRYPT_V2_CLIENT_RESET_V3),
              ("v2-server-wkc", server, v.TLS_CRYPT_V2_CLIENT_WKC),
              ("v2-client", client, v.TLS_CRYPT_V2_SERVER_RESET)]
    return cases


WIRE = _all_wire()


@pytest.mark.parametrize(("name", "wrap", "datagram"), WIRE, ids=[c[0] for c in WIRE])
def test_refused_datagrams_leave_the_buffer_unchanged(
    name: str, wrap: ControlWrap, datagram: bytes
) -> None:
    """Every truncation (the wrap's Buffer reads run out, or the tag fails) and a flipped
    byte: None, and offset, length and bytes as they came, so nothing half-unwrapped is left
    for the next step to misread."""
    cuts = sorted({0, 1, 8, 9, 10, 17, 20, 40, 49, 50, len(datagram) // 2, len(datagram) - 1})
    candidates = [datagram[:cut] for cut in cuts if cut < len(datagram)]
    for index in (0, 12, len(datagram) - 3):
        bad = bytearray(datagram)
        bad[index] ^= 0x10
        candidates.append(bytes(bad))
    for candidate in candidates:
        buf = buffer_of(wrap, candidate)
        before = _state(buf)
        assert wrap.open(buf) is None, len(candidate)
        assert _state(buf) == before, len(candidate)


@pytest.mark.parametrize(("name", "server", "client", "up", "down"), CASES, ids=IDS)
def test_seal_without_headroom_changes_nothing(
    name: str, server: ControlWrap, client: ControlWrap, up: list[bytes], down: list[bytes]
) -> None:
    plain = buffer_of(server, up[1])
    assert server.open(plain) is not None
    packet = bytes(plain.data)
    short = Buffer(len(packet) + client.overhead)
    short.reset(client.overhead - 1)
    short.append(packet)
    before = _state(short)
    with pytest.raises(BoundsError):
        client.seal(short, 1, 1)
    assert _state(short) == before
    with pytest.raises(BoundsError):  # a packet-id that does not fit its u32
        client.seal(buffer_of(client, packet), 1 << 32, 1)
    tiny = buffer_of(client, packet[:8])  # no op|sid to keep in front
    with pytest.raises(BoundsError):
        client.seal(tiny, 1, 1)
    assert bytes(tiny.data) == packet[:8]


def test_v2_seal_without_tailroom_for_the_wkc_changes_nothing() -> None:
    server, client = v2_wraps()
    buf = buffer_of(server, v.TLS_CRYPT_V2_CLIENT_RESET_V3)
    opened = server.open(buf)
    assert opened is not None
    plain = bytes(buf.data)
    short = Buffer(client.overhead + len(plain) + len(client.client_key.wkc) - 1)
    short.reset(client.overhead)
    short.append(plain)
    before = _state(short)
    with pytest.raises(BoundsError, match="WKc"):
        client.seal(short, opened.packet_id, opened.timestamp)
    assert _state(short) == before


def test_v2_wkc_request_tlv_bounds() -> None:
    """The early-negotiation TLVs are read with Buffer reads: a length beyond the packet or a
    truncated TLV means "no request" (and the reset still opens), never an exception."""
    from tunnel.protocol.codec import write_control
    from tunnel.protocol.wrap.tls_crypt_v2 import _asks_for_wkc

    sid, remote = bytes(range(1, 9)), bytes(range(9, 17))

    def reset_with(payload: bytes) -> Buffer:
        buf = Buffer(200)
        buf.reset(100)
        buf.append(payload)
        write_control(buf, Opcode.P_CONTROL_HARD_RESET_SERVER_V2, 0, sid, (0,), remote, 0)
        return buf

    assert _asks_for_wkc(reset_with(EARLY_NEG_TLV))
    assert _asks_for_wkc(reset_with(b"\x00\x09\x00\x01z" + EARLY_NEG_TLV))  # another TLV first
    for bad in (EARLY_NEG_TLV[:5], EARLY_NEG_TLV[:3], b"\x00\x01\x00\xff\x00\x01", b"",
                b"\x00\x01\x00\x02\x00\x00"):
        buf = reset_with(bad)
        before = _state(buf)
        assert not _asks_for_wkc(buf)
        assert _state(buf) == before
