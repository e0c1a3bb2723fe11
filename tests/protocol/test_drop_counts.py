"""Every refused datagram is counted by cause, and reported as rate-limited events."""

from __future__ import annotations

from tests.protocol.harness import CLIENT_ADDR, SERVER_ADDR, SERVER_VIP, Pair, ip_packet
from tunnel.io.gro_rows import RunRows
from tunnel.protocol.drops import (
    AUTH_FAILED,
    BAD_SOURCE,
    EVENT_BURST,
    MALFORMED,
    NO_SESSION,
    REPLAY,
)
from tunnel.protocol.events import PacketDropped
from tunnel.protocol.verdicts import DROPPED, TO_TUN


def _dropped_events(pair: Pair, side: str = "server") -> list[PacketDropped]:
    pair.flush()
    events = pair.server_events if side == "server" else pair.client_events
    return [e for e in events if isinstance(e, PacketDropped)]


def test_replays_tampering_garbage_and_strangers_are_counted_by_cause() -> None:
    pair = Pair()
    pair.connect()
    sealed = [pair.client_sends(b"x%03d" % i) for i in range(10)]
    assert all(s is not None for s in sealed)
    for datagram in sealed:
        assert datagram is not None and pair.to_server(datagram) == TO_TUN
    for _ in range(30):  # 300 replays
        for datagram in sealed:
            assert datagram is not None and pair.to_server(datagram) == DROPPED
    for i, datagram in enumerate(sealed * 50):  # 500 tampered
        assert datagram is not None
        bad = bytearray(datagram)
        bad[-1 - i % 16] ^= 0x40
        assert pair.to_server(bytes(bad)) == DROPPED
    stranger = ip_packet(SERVER_VIP, SERVER_VIP, b"spoofed")  # not the client's address
    assert pair.to_server(pair.sealed_by_client(stranger)) == DROPPED
    head = bytes([(9 << 3)]) + (4242).to_bytes(3, "big")
    for datagram in (b"", b"\x48\x00", head + bytes(40)):
        pair.to_server(datagram)
    counts = pair.server.drops.counts
    assert counts[REPLAY] == 300, counts
    assert counts[AUTH_FAILED] == 500, counts
    assert counts[BAD_SOURCE] == 1, counts
    assert counts[MALFORMED] == 2, counts
    assert counts[NO_SESSION] == 1, counts
    assert pair.server.dropped == 804

    # Reported, but rate-limited: a burst per cause, the rest folded into the next report.
    events = _dropped_events(pair)
    by_cause = {c: [e for e in events if e.cause == c] for c in (REPLAY, AUTH_FAILED)}
    assert len(by_cause[REPLAY]) == EVENT_BURST
    assert len(by_cause[AUTH_FAILED]) == EVENT_BURST
    pair.run(11)  # the next period: one more replay reports the 290 not reported
    assert sealed[0] is not None and pair.to_server(sealed[0]) == DROPPED
    late = [e for e in _dropped_events(pair) if e.cause == REPLAY][-1]
    assert late.count == 300 - EVENT_BURST + 1
    assert "bad packet ID" in late.reason


def _rows_of(run: list[bytes]) -> RunRows:
    rows = RunRows()
    joined = memoryview(b"".join(run))
    segment = len(run[0])
    assert rows.load(joined, joined[segment:], segment, len(run))
    return rows


def test_the_server_opens_a_run_in_batch_with_the_per_packet_checks() -> None:
    """`Server.open_rows` (a GRO run from a client): replays and a forged datagram are
    counted by cause, a row from a source that is not the client's is refused as
    `receive` refuses it (after authentication), and the rest go to the TUN with the
    server's and the client's counters as one by one."""
    pair = Pair()
    pair.connect()
    payload = bytes(60)
    sealed = [pair.client_sends(b"u%03d" % i + payload) for i in range(5)]
    assert all(s is not None for s in sealed)
    run = [bytes(s) for s in sealed if s is not None]
    spoofed = pair.sealed_by_client(ip_packet(SERVER_VIP, SERVER_VIP, b"u005" + payload))
    run.append(spoofed)
    assert len(spoofed) == len(run[0])
    for datagram in run[:2]:
        assert pair.to_server(datagram) == TO_TUN
    forged = bytearray(run[2])
    forged[-1] ^= 1
    run[2] = bytes(forged)
    server = pair.server
    entry = server.table.by_addr[CLIENT_ADDR]
    client_traffic = entry.session.traffic
    before = (server.traffic.link_rx_packets, server.traffic.tun_tx,
              client_traffic.link_rx_packets, client_traffic.replay_drops,
              client_traffic.auth_drops)
    verdicts = server.open_rows(_rows_of(run), CLIENT_ADDR, pair.now)
    assert verdicts == [DROPPED, DROPPED, DROPPED, TO_TUN, TO_TUN, DROPPED]
    counts = server.drops.counts
    assert (counts[REPLAY], counts[AUTH_FAILED], counts[BAD_SOURCE]) == (2, 1, 1), counts
    assert server.traffic.link_rx_packets == before[0] + 6
    assert server.traffic.tun_tx == before[1] + 2 * (len(run[0]) - 24)
    assert (client_traffic.link_rx_packets, client_traffic.replay_drops,
            client_traffic.auth_drops) == (before[2] + 6, before[3] + 2, before[4] + 1)
    # The per-packet path afterwards agrees: the batch moved the replay window.
    assert pair.to_server(run[3]) == DROPPED
    assert server.drops.counts[REPLAY] == 3


def test_the_server_leaves_a_run_it_cannot_take_whole_to_the_per_packet_path() -> None:
    """From another address than the client's (a float) or with mixed peer-ids: None, with
    nothing opened, so that `receive` decides each datagram (and the float) as before."""
    pair = Pair()
    pair.connect()
    run = [pair.client_sends(b"f%03d" % i + bytes(60)) for i in range(3)]
    datagrams = [bytes(d) for d in run if d is not None]
    server = pair.server
    assert server.open_rows(_rows_of(datagrams), ("192.0.2.99", 40000), pair.now) is None
    other = bytearray(datagrams[1])
    other[3] ^= 1  # another peer-id in the second row
    mixed = [datagrams[0], bytes(other), datagrams[2]]
    assert server.open_rows(_rows_of(mixed), CLIENT_ADDR, pair.now) is None
    # Nothing was opened: every datagram is still new to the per-packet path.
    assert [pair.to_server(d) for d in datagrams] == [TO_TUN] * 3


def test_the_client_counts_its_drops_too() -> None:
    pair = Pair()
    pair.connect()
    sealed = pair.server_sends(b"down")
    assert sealed is not None and pair.to_client(sealed) == TO_TUN
    for _ in range(5):
        assert pair.to_client(sealed) == DROPPED
    bad = bytearray(sealed)
    bad[-1] ^= 1
    assert pair.to_client(bytes(bad)) == DROPPED
    assert pair.to_client(b"") == DROPPED
    counts = pair.client.drops.counts
    assert (counts[REPLAY], counts[AUTH_FAILED], counts[MALFORMED]) == (5, 1, 1), counts


def test_a_run_opened_in_batch_counts_each_refused_row_by_its_own_cause() -> None:
    """`Client.open_rows` (a GRO run from the server, tunnel/io/gro_rows.py): two replays and
    one forged datagram in one run are counted as 2 replays and 1 authentication failure, as
    the per-packet path counts them, and the authentic rows still go to the TUN."""
    pair = Pair()
    pair.connect()
    sealed = [pair.server_sends(b"r%03d" % i + bytes(60)) for i in range(5)]
    assert all(s is not None for s in sealed)
    run = [bytes(s) for s in sealed if s is not None]
    for datagram in run[:2]:
        assert pair.to_client(datagram) == TO_TUN
    forged = bytearray(run[2])
    forged[-1] ^= 1
    run[2] = bytes(forged)
    rows = RunRows()
    joined = memoryview(b"".join(run))
    segment = len(run[0])
    assert rows.load(joined, joined[segment:], segment, len(run))
    verdicts = pair.client.open_rows(rows, SERVER_ADDR, pair.now)
    assert verdicts == [DROPPED, DROPPED, DROPPED, TO_TUN, TO_TUN]
    counts = pair.client.drops.counts
    assert (counts[REPLAY], counts[AUTH_FAILED], counts[MALFORMED]) == (2, 1, 0), counts
    assert pair.client.session.dropped_data == 3
    # The per-packet path afterwards still names its own cause (the batch kept it in step).
    assert pair.to_client(run[0]) == DROPPED
    assert pair.client.drops.counts[REPLAY] == 3
