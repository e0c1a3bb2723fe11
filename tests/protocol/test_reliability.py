"""ReliableLayer: the stock exchange byte for byte, window limits, backoff, fast retransmit,
ACK rules, skip_to, and two layers talking through a lossy, reordering, duplicating link.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.protocol.codec import ControlPacket, parse_control
from tunnel.protocol.constants import (
    IPV6_UDP_OVERHEAD,
    RECV_WINDOW,
    SEND_WINDOW,
    TLS_MTU,
    Opcode,
)
from tunnel.protocol.errors import ConfigError, ProtocolError
from tunnel.protocol.reliability import ReliableLayer

C_SID = bytes.fromhex("fa99b04cc87dcc2e")
S_SID = bytes.fromhex("391dc630e20be3ab")
OTHER_SID = bytes.fromhex("0102030405060708")
CTRL = Opcode.P_CONTROL_V1


def make_pair() -> tuple[ReliableLayer, ReliableLayer]:
    client = ReliableLayer(key_id=0, local_sid=C_SID)
    server = ReliableLayer(key_id=0, local_sid=S_SID)
    client.remote_sid = S_SID
    server.remote_sid = C_SID
    return client, server


def msg(
    pid: int,
    payload: bytes = b"",
    *,
    acks: tuple[int, ...] = (),
    sid: bytes = S_SID,
    to: bytes = C_SID,
) -> ControlPacket:
    """A P_CONTROL_V1, by default from the server to the client."""
    return ControlPacket(CTRL, 0, sid, acks, to if acks else None, pid, payload)


def ack(*pids: int, to: bytes = C_SID, sid: bytes = S_SID) -> ControlPacket:
    return ControlPacket(Opcode.P_ACK_V1, 0, sid, pids, to)


def parsed(datagrams: list[bytes]) -> list[ControlPacket]:
    return [parse_control(d) for d in datagrams]


# --- the stock exchange, byte for byte (OPENVPN-WIRE.md 2.1 / 4.2) ----------------------------


def test_three_way_reset_matches_captured_bytes() -> None:
    client = ReliableLayer(key_id=0, local_sid=C_SID)  # does not know the server's sid yet
    server = ReliableLayer(key_id=0, local_sid=S_SID)
    client.queue(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2)
    (reset,) = client.datagrams_to_send(0.0)
    assert reset == bytes.fromhex("38 fa99b04cc87dcc2e 00 00000000")

    server.receive(parse_control(reset), 0.01)
    assert server.pop_received() == [(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, b"")]
    server.queue(Opcode.P_CONTROL_HARD_RESET_SERVER_V2)
    (answer,) = server.datagrams_to_send(0.01)
    assert answer == bytes.fromhex("40 391dc630e20be3ab 01 00000000 fa99b04cc87dcc2e 00000000")

    client.receive(parse_control(answer), 0.02)
    assert client.remote_sid == S_SID  # learned from the first packet
    assert client.all_acked  # our reset was ACKed
    assert client.pop_received() == [(Opcode.P_CONTROL_HARD_RESET_SERVER_V2, b"")]
    client.queue(CTRL, b"\x16\x03\x01")
    (hello,) = client.datagrams_to_send(0.02)
    assert hello == bytes.fromhex(
        "20 fa99b04cc87dcc2e 01 00000000 391dc630e20be3ab 00000001 160301"
    )


def test_dedicated_ack_matches_captured_bytes() -> None:
    # Server pid 0 and pid 1 arrive before the client has anything to send: one P_ACK_V1,
    # newest ACK first.
    client, _ = make_pair()
    client.receive(msg(0), 0.0)
    client.receive(msg(1), 0.0)
    assert client.datagrams_to_send(0.0) == [
        bytes.fromhex("28 fa99b04cc87dcc2e 02 00000001 00000000 391dc630e20be3ab")
    ]
    assert client.datagrams_to_send(0.0) == []  # ACKs go out once


# --- sending: window, sizes, backoff, fast retransmit ----------------------------------------


def test_pids_start_at_zero_and_follow_queue_order() -> None:
    client, _ = make_pair()
    for i in range(3):
        client.queue(CTRL, bytes([i]))
    pkts = parsed(client.datagrams_to_send(0.0))
    assert [(p.packet_id, p.payload) for p in pkts] == [(0, b"\x00"), (1, b"\x01"), (2, b"\x02")]
    assert all(p.key_id == 0 and p.session_id == C_SID for p in pkts)


def test_key_id_in_first_byte() -> None:
    layer = ReliableLayer(key_id=5, local_sid=C_SID)
    layer.queue(Opcode.P_CONTROL_SOFT_RESET_V1)
    (d,) = layer.datagrams_to_send(0.0)
    assert d[0] == (3 << 3) | 5
    assert parse_control(d).packet_id == 0


def test_send_window_never_exceeds_six() -> None:
    client, _ = make_pair()
    for i in range(10):
        client.queue(CTRL, bytes([i]))
    assert [p.packet_id for p in parsed(client.datagrams_to_send(0.0))] == [0, 1, 2, 3, 4, 5]
    assert list(client.outstanding_pids) == [0, 1, 2, 3, 4, 5]
    # ACK everything but the lowest: pid 6 - lowest 0 == 6, so nothing new may go out. The
    # only datagram is pid 0's fast retransmit (5 higher ACKs arrived).
    client.receive(ack(1, 2, 3, 4, 5), 0.1)
    assert [p.packet_id for p in parsed(client.datagrams_to_send(0.1))] == [0]
    assert list(client.outstanding_pids) == [0]
    client.receive(ack(0), 0.2)
    assert [p.packet_id for p in parsed(client.datagrams_to_send(0.2))] == [6, 7, 8, 9]
    assert not client.all_acked
    client.receive(ack(6, 7, 8, 9), 0.3)
    assert client.all_acked


def test_window_slides_with_the_lowest_unacked_pid() -> None:
    client, _ = make_pair()
    for i in range(8):
        client.queue(CTRL, bytes([i]))
    client.datagrams_to_send(0.0)
    client.receive(ack(0), 0.1)
    assert [p.packet_id for p in parsed(client.datagrams_to_send(0.1))] == [6]
    client.receive(ack(2), 0.1)  # lowest unACKed is still 1
    assert client.datagrams_to_send(0.1) == []


def test_max_payload_and_full_datagram_size() -> None:
    client, _ = make_pair()
    assert client.max_payload() == 1184
    v6 = ReliableLayer(key_id=0, local_sid=C_SID, max_datagram=TLS_MTU - IPV6_UDP_OVERHEAD)
    assert v6.max_payload() == 1164
    for pid in range(4):
        client.receive(msg(pid), 0.0)
    client.queue(CTRL, bytes(client.max_payload()))
    (d,) = client.datagrams_to_send(0.0)
    assert len(d) == 1222
    assert parse_control(d).acks == (3, 2, 1, 0)
    with pytest.raises(ValueError):
        client.queue(CTRL, bytes(client.max_payload() + 1))


def test_queue_refuses_ack_and_data_opcodes() -> None:
    client, _ = make_pair()
    for op in (Opcode.P_ACK_V1, Opcode.P_DATA_V2, Opcode.P_CONTROL_HARD_RESET_CLIENT_V1):
        with pytest.raises(ValueError):
            client.queue(op)


def test_backoff_doubles_2_4_8() -> None:
    client, _ = make_pair()
    assert client.next_deadline() is None
    client.queue(CTRL, b"x")
    assert client.datagrams_to_send(0.0) != []
    sends = [0.0]
    now = 0.0
    while len(sends) < 5:
        deadline = client.next_deadline()
        assert deadline is not None
        assert client.datagrams_to_send(deadline - 0.001) == []  # not early
        now = deadline
        (d,) = client.datagrams_to_send(now)
        assert parse_control(d).packet_id == 0
        sends.append(now)
    assert sends == [0.0, 2.0, 6.0, 14.0, 30.0]
    assert client.retransmits == 4
    assert client.fast_retransmits == 0


def test_custom_initial_timeout() -> None:
    layer = ReliableLayer(key_id=0, local_sid=C_SID, initial_timeout=0.5)
    layer.queue(CTRL)
    layer.datagrams_to_send(10.0)
    assert layer.next_deadline() == 10.5


def test_fast_retransmit_after_three_higher_acks() -> None:
    client, _ = make_pair()
    for i in range(5):
        client.queue(CTRL, bytes([i]))
    client.datagrams_to_send(0.0)
    client.receive(ack(1), 0.1)
    client.receive(ack(2), 0.1)
    assert client.datagrams_to_send(0.1) == []
    assert client.next_deadline() == 2.0
    client.receive(ack(3), 0.2)
    assert client.next_deadline() == 0.2  # due now
    (d,) = client.datagrams_to_send(0.2)
    assert parse_control(d).packet_id == 0
    assert (client.retransmits, client.fast_retransmits) == (1, 1)
    # The retransmit restarted its backoff clock: next try 0.2 + 4 s; pid 4 still at 2.0.
    assert client.next_deadline() == 2.0
    client.receive(ack(4), 0.3)
    assert client.next_deadline() == 4.2


def test_repeated_acks_of_one_higher_pid_count_like_stock() -> None:
    # reliable_send_purge() counts every ACK id above the entry, repeats included (stock
    # re-sends recent ACKs, so a lost packet is noticed quickly).
    client, _ = make_pair()
    client.queue(CTRL, b"a")
    client.queue(CTRL, b"b")
    client.datagrams_to_send(0.0)
    for _ in range(3):
        client.receive(ack(1), 0.1)
    assert [p.packet_id for p in parsed(client.datagrams_to_send(0.1))] == [0]


def test_schedule_now_resends_everything_with_fresh_timeout() -> None:
    client, _ = make_pair()
    client.queue(CTRL, b"a")
    client.queue(CTRL, b"b")
    client.datagrams_to_send(0.0)
    client.datagrams_to_send(2.0)  # first retransmit: timeout now 8
    client.schedule_now(3.0)
    assert [p.packet_id for p in parsed(client.datagrams_to_send(3.0))] == [0, 1]
    assert client.next_deadline() == 5.0


def test_acks_piggyback_four_newest_first_rest_in_ack_packets() -> None:
    client, _ = make_pair()
    for pid in range(10):
        client.receive(msg(pid), 0.0)
    client.queue(CTRL, b"x")
    pkts = parsed(client.datagrams_to_send(0.0))
    # The P_ACK_V1 is topped up to 8 with the most recently sent ids (copy_acks_to_mru()).
    assert [(p.opcode, p.acks) for p in pkts] == [
        (CTRL, (9, 8, 7, 6)),
        (Opcode.P_ACK_V1, (5, 4, 3, 2, 1, 0, 9, 8)),
    ]
    assert all(p.remote_session_id == S_SID for p in pkts)


def test_ack_packet_limit() -> None:
    layer = ReliableLayer(key_id=0, local_sid=C_SID, max_acks_per_ack_packet=4)
    layer.remote_sid = S_SID
    for pid in range(10):
        layer.receive(msg(pid), 0.0)
    assert [p.acks for p in parsed(layer.datagrams_to_send(0.0))] == [
        (9, 8, 7, 6),
        (5, 4, 3, 2),
        (1, 0, 5, 4),
    ]
    client, _ = make_pair()
    for pid in range(10):
        client.receive(msg(pid), 0.0)
    assert [p.acks for p in parsed(client.datagrams_to_send(0.0))] == [
        (9, 8, 7, 6, 5, 4, 3, 2),
        (1, 0, 9, 8, 7, 6, 5, 4),
    ]


def test_recently_sent_acks_ride_on_later_packets() -> None:
    # A lost ACK is repaired by the next control packet, as stock does (copy_acks_to_mru()),
    # but recent ACKs alone never trigger a datagram.
    client, _ = make_pair()
    client.receive(msg(0), 0.0)
    client.receive(msg(1), 0.0)
    assert [p.acks for p in parsed(client.datagrams_to_send(0.0))] == [(1, 0)]
    assert client.datagrams_to_send(0.1) == []
    assert client.next_deadline() is None
    client.queue(CTRL, b"x")
    client.receive(msg(2), 0.2)
    (d,) = client.datagrams_to_send(0.2)
    assert parse_control(d).acks == (2, 1, 0)
    client.queue(CTRL, b"y")
    for pid in range(3, 9):
        client.receive(msg(pid), 0.3)
    client.datagrams_to_send(0.3)
    # "y" carried 8, 7, 6, 5; a P_ACK_V1 then carried 4, 3 (topped up). The retransmit of "x"
    # repeats the 4 most recently written ids.
    (d,) = client.datagrams_to_send(2.2)
    assert parse_control(d).acks == (4, 3, 8, 7)


def test_retransmits_carry_fresh_acks() -> None:
    client, _ = make_pair()
    client.queue(CTRL, b"x")
    assert parse_control(client.datagrams_to_send(0.0)[0]).acks == ()
    client.receive(msg(0), 1.0)
    (d,) = client.datagrams_to_send(2.0)
    pkt = parse_control(d)
    assert (pkt.packet_id, pkt.acks) == (0, (0,))


# --- receiving ---------------------------------------------------------------------------------


def test_in_order_delivery_with_gaps() -> None:
    client, _ = make_pair()
    client.receive(msg(1, b"b"), 0.0)
    client.receive(msg(2, b"c"), 0.0)
    assert client.pop_received() == []
    client.receive(msg(0, b"a"), 0.0)
    assert client.pop_received() == [(CTRL, b"a"), (CTRL, b"b"), (CTRL, b"c")]
    assert client.pop_received() == []
    assert client.next_expected_pid == 3


def test_duplicates_are_acked_again_but_delivered_once() -> None:
    client, _ = make_pair()
    client.receive(msg(1, b"b"), 0.0)
    client.receive(msg(1, b"b"), 0.0)  # duplicate of a stored pid, ACK still pending
    assert [p.acks for p in parsed(client.datagrams_to_send(0.0))] == [(1,)]
    client.receive(msg(1, b"b"), 0.1)  # our ACK was lost: ACK again
    assert [p.acks for p in parsed(client.datagrams_to_send(0.1))] == [(1,)]
    client.receive(msg(0, b"a"), 0.2)
    assert client.pop_received() == [(CTRL, b"a"), (CTRL, b"b")]
    assert [p.acks for p in parsed(client.datagrams_to_send(0.2))] == [(0, 1)]
    client.receive(msg(0, b"a"), 0.3)  # below next_expected: already delivered
    assert [p.acks for p in parsed(client.datagrams_to_send(0.3))] == [(0, 1)]
    assert client.pop_received() == []
    assert client.duplicates == 3


def test_receive_window_edge() -> None:
    client, _ = make_pair()
    client.receive(msg(RECV_WINDOW), 0.0)  # next_expected 0: pid 12 is outside [0, 12)
    assert client.datagrams_to_send(0.0) == []
    assert client.dropped_out_of_window == 1
    client.receive(msg(RECV_WINDOW - 1, b"last"), 0.0)
    assert [p.acks for p in parsed(client.datagrams_to_send(0.0))] == [(RECV_WINDOW - 1,)]
    for pid in range(RECV_WINDOW - 1):
        client.receive(msg(pid), 0.0)
    assert len(client.pop_received()) == RECV_WINDOW
    client.receive(msg(RECV_WINDOW, b"now fits"), 0.0)  # the window slid
    assert client.pop_received() == [(CTRL, b"now fits")]


def test_ack_only_packet_is_not_stored_or_acked() -> None:
    client, _ = make_pair()
    client.queue(CTRL)
    client.datagrams_to_send(0.0)
    client.receive(ack(0), 0.1)
    assert client.all_acked
    assert client.pop_received() == []
    assert client.datagrams_to_send(0.1) == []


def test_unknown_and_repeated_acks_are_harmless() -> None:
    client, _ = make_pair()
    client.queue(CTRL)
    client.datagrams_to_send(0.0)
    client.receive(ack(0, 0, 77), 0.1)
    client.receive(ack(0), 0.2)
    assert client.all_acked


def _snapshot(layer: ReliableLayer) -> tuple[object, ...]:
    return (
        layer.outstanding_pids,
        layer.next_send_pid,
        layer.next_expected_pid,
        layer.remote_sid,
        layer.next_deadline(),
        layer.duplicates,
        layer.dropped_out_of_window,
    )


@pytest.mark.parametrize(
    "bad",
    [
        msg(0, b"x", acks=(0, 1, 2), to=OTHER_SID),  # the ACKs name someone else's session
        ack(0, 1, 2, to=OTHER_SID),
    ],
)
def test_ack_for_another_session_rejected_without_state_change(bad: ControlPacket) -> None:
    client, _ = make_pair()
    for i in range(4):
        client.queue(CTRL, bytes([i]))
    client.datagrams_to_send(0.0)
    before = _snapshot(client)
    with pytest.raises(ProtocolError, match="ACK for another session"):
        client.receive(bad, 0.5)
    assert _snapshot(client) == before
    assert client.pop_received() == []
    assert client.datagrams_to_send(0.5) == []  # nothing stored, nothing to ACK, no resend


def test_first_packet_fixes_remote_sid_then_other_senders_are_rejected() -> None:
    layer = ReliableLayer(key_id=0, local_sid=C_SID)
    layer.receive(msg(0), 0.0)
    assert layer.remote_sid == S_SID
    before = _snapshot(layer)
    with pytest.raises(ProtocolError, match="another session"):
        layer.receive(msg(1, sid=OTHER_SID), 0.0)
    assert _snapshot(layer) == before


def test_wrong_key_id_and_missing_pid_rejected() -> None:
    client, _ = make_pair()
    with pytest.raises(ProtocolError, match="key_id"):
        client.receive(ControlPacket(CTRL, 1, S_SID, packet_id=0), 0.0)
    with pytest.raises(ProtocolError, match="without a message packet id"):
        client.receive(ControlPacket(CTRL, 0, S_SID), 0.0)
    assert client.datagrams_to_send(0.0) == []


# --- skip_to (stateless HMAC-cookie server) ----------------------------------------------------


def test_skip_to_after_stateless_reset() -> None:
    server = ReliableLayer(key_id=0, local_sid=S_SID)
    server.skip_to(next_send_pid=1, next_recv_pid=1)
    # The client's ClientHello: pid 1, ACKing the (stateless) server reset pid 0.
    server.receive(msg(1, b"hello", acks=(0,), sid=C_SID, to=S_SID), 0.0)
    assert server.remote_sid == C_SID
    assert server.pop_received() == [(CTRL, b"hello")]
    server.queue(CTRL, b"server hello")
    (d,) = server.datagrams_to_send(0.0)
    pkt = parse_control(d)
    assert (pkt.packet_id, pkt.acks, pkt.remote_session_id) == (1, (1,), C_SID)
    # A late copy of the client's reset (pid 0) counts as already delivered: ACKed, not stored.
    server.receive(ControlPacket(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, 0, C_SID, packet_id=0), 0.1)
    assert server.pop_received() == []
    assert [p.acks for p in parsed(server.datagrams_to_send(0.1))] == [(0, 1)]


def test_skip_to_refused_once_traffic_flowed() -> None:
    client, _ = make_pair()
    client.queue(CTRL)
    client.datagrams_to_send(0.0)
    with pytest.raises(ValueError):
        client.skip_to(next_send_pid=1, next_recv_pid=1)


def test_constructor_validation() -> None:
    with pytest.raises(ConfigError):
        ReliableLayer(key_id=8, local_sid=C_SID)
    with pytest.raises(ConfigError):
        ReliableLayer(key_id=0, local_sid=bytes(8))
    with pytest.raises(ConfigError):
        ReliableLayer(key_id=0, local_sid=C_SID, initial_timeout=0)
    with pytest.raises(ConfigError):
        ReliableLayer(key_id=0, local_sid=C_SID, max_datagram=40)
    with pytest.raises(ConfigError):
        ReliableLayer(key_id=0, local_sid=C_SID, max_acks_per_ack_packet=9)


def test_next_deadline_semantics() -> None:
    client, _ = make_pair()
    assert client.next_deadline() is None
    client.receive(msg(0), 5.0)
    assert client.next_deadline() == 5.0  # an ACK is pending: due now
    client.datagrams_to_send(5.0)
    assert client.next_deadline() is None
    client.queue(CTRL)
    assert client.next_deadline() == 5.0  # a new message fits the window: due now
    client.datagrams_to_send(6.0)
    assert client.next_deadline() == 8.0


# --- two layers through a bad link ------------------------------------------------------------


@dataclass
class Link:
    """One direction of a bad network.

    Drops every ``drop_every``-th datagram (and each one with probability ``loss``), sends every
    ``dup_every``-th twice (and each with probability ``dup``), and delays each copy at random
    up to ``max_delay`` seconds, which reorders them.
    """

    rng: random.Random
    drop_every: int = 0
    dup_every: int = 0
    max_delay: float = 0.01
    loss: float = 0.0
    dup: float = 0.0
    sent: int = 0
    dropped: int = 0

    def carry(self, datagram: bytes, now: float) -> list[tuple[float, bytes]]:
        self.sent += 1
        if (self.drop_every and self.sent % self.drop_every == 0) or self.rng.random() < self.loss:
            self.dropped += 1
            return []
        copies = 1
        if (self.dup_every and self.sent % self.dup_every == 0) or self.rng.random() < self.dup:
            copies = 2
        return [(now + self.rng.uniform(0.001, self.max_delay), datagram) for _ in range(copies)]


@dataclass(order=True)
class _InAir:
    at: float
    seq: int
    to: int = field(compare=False)
    data: bytes = field(compare=False)


def run_conversation(
    n_messages: int, seed: int, **link: float
) -> tuple[list[ReliableLayer], list[Link]]:
    """Both sides send ``n_messages`` to each other through ``Link(**link)`` on a fake clock."""
    rng = random.Random(seed)
    layers = list(make_pair())
    links = [Link(rng, **link) for _ in layers]  # type: ignore[arg-type]
    sent: list[list[bytes]] = [[], []]
    got: list[list[bytes]] = [[], []]
    for side, layer in enumerate(layers):
        for i in range(n_messages):
            payload = f"{side}:{i}:".encode() + rng.randbytes(rng.randrange(0, 300))
            sent[side].append(payload)
            layer.queue(CTRL, payload)

    air: list[_InAir] = []
    seq = 0
    now = 0.0
    for _ in range(50_000):
        for side, layer in enumerate(layers):
            for d in layer.datagrams_to_send(now):
                assert len(d) <= layer.max_datagram
                for at, data in links[side].carry(d, now):
                    seq += 1
                    heapq.heappush(air, _InAir(at, seq, 1 - side, data))
            outstanding = layer.outstanding_pids
            assert len(outstanding) <= SEND_WINDOW
            if outstanding:
                assert layer.next_send_pid - outstanding[0] <= SEND_WINDOW
        if all(layer.all_acked for layer in layers) and all(
            len(got[s]) == n_messages for s in (0, 1)
        ):
            break
        candidates = [d for d in (layer.next_deadline() for layer in layers) if d is not None]
        if air:
            candidates.append(air[0].at)
        assert candidates, "stalled: nothing in flight and nothing scheduled"
        now = max(now, min(candidates))
        while air and air[0].at <= now:
            item = heapq.heappop(air)
            receiver = layers[item.to]
            receiver.receive(parse_control(item.data), now)
            got[item.to].extend(payload for _, payload in receiver.pop_received())
    else:
        pytest.fail(f"conversation did not finish (fake clock at {now:.0f} s)")
    # Each side received the other's stream in order, exactly once.
    assert got[0] == sent[1]
    assert got[1] == sent[0]
    return layers, links


@pytest.mark.parametrize(
    ("drop_every", "dup_every", "max_delay"),
    [
        (0, 0, 0.01),  # clean
        (2, 0, 0.001),  # every second datagram lost, no reordering
        (2, 0, 0.01),
        (3, 5, 0.5),  # loss, duplication, heavy reordering
        (5, 3, 3.0),  # delays longer than the retransmit timeout
        (7, 2, 0.2),
    ],
)
def test_long_stream_over_bad_link(drop_every: int, dup_every: int, max_delay: float) -> None:
    layers, links = run_conversation(
        150, seed=drop_every, drop_every=drop_every, dup_every=dup_every, max_delay=max_delay
    )
    if drop_every:
        assert all(link.dropped for link in links)
        assert all(layer.retransmits for layer in layers)
    if dup_every:
        assert any(layer.duplicates for layer in layers)


@settings(deadline=None, max_examples=30)
@given(
    loss=st.floats(0.0, 0.4),
    dup=st.floats(0.0, 0.3),
    max_delay=st.floats(0.001, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_stream_property(loss: float, dup: float, max_delay: float, seed: int) -> None:
    run_conversation(40, seed=seed, loss=loss, dup=dup, max_delay=max_delay)


# --- datagrams are built in the owner's pooled buffers ------------------------------------------


def test_datagrams_are_built_in_the_pool_and_sealed_in_place() -> None:
    from core import Buffer, BufferPool, FrameBuilder
    from tunnel.protocol.codec import CONTROL_HEADER_MAX, control_frame_builder

    builder = control_frame_builder()
    builder.reserve("test wrap", headroom=4)
    pool = BufferPool(builder.finalize(), 1)
    layer = ReliableLayer(key_id=0, local_sid=C_SID, pool=pool)
    layer.remote_sid = S_SID
    layer.receive(msg(0), 0.0)
    layer.queue(CTRL, b"hello")
    seen: list[int] = []

    def seal(buf: Buffer, now: float) -> None:  # a wrap: prepends into the headroom
        seen.append(buf.headroom)
        buf.prepend(b"WRAP")

    out = layer.datagrams_to_send(0.0, seal)
    assert [d[:4] for d in out] == [b"WRAP"]
    assert parse_control(out[0][4:]) == ControlPacket(CTRL, 0, C_SID, (0,), S_SID, 0, b"hello")
    # The payload sat at the frame's headroom; the header took 26 of it, the wrap 4 more.
    assert seen == [pool.frame.headroom - 26]
    assert pool.frame.headroom >= CONTROL_HEADER_MAX + 4
    stats = pool.stats
    assert (stats.in_use, stats.acquires, stats.releases) == (0, 1, 1)

    with pytest.raises(ConfigError, match="headroom"):  # a frame without the header's room
        ReliableLayer(key_id=0, local_sid=C_SID,
                      pool=BufferPool(FrameBuilder(tun_mtu=1250).finalize(), 1))


def test_a_failing_seal_returns_the_buffer_to_the_pool() -> None:
    from core import Buffer, BufferPool
    from tunnel.protocol.codec import plain_control_frame

    pool = BufferPool(plain_control_frame(), 1)
    layer = ReliableLayer(key_id=0, local_sid=C_SID, pool=pool)
    layer.queue(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2)

    def seal(buf: Buffer, now: float) -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError):
        layer.datagrams_to_send(0.0, seal)
    assert pool.stats.in_use == 0
    assert parsed(layer.datagrams_to_send(10.0)) == [  # and the retransmit still goes out
        ControlPacket(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, 0, C_SID, packet_id=0)]
