"""The stream (TCP) drivers under hostile peers: nothing from the network stops them or leaks.

As tests/io/test_driver_fuzz.py does for the datagram driver, with a live TCP tunnel
(tests/io/tcp_pair.py: the real TcpServerDriver and ClientLinkDriver on 127.0.0.1, in-memory
devices). Hostile connections to the server's listener: lengths of 0 and beyond the frame,
every hostile datagram of tests/io/hostile.py framed as a packet, random bytes, half a prefix
or half a packet and gone, resets mid-packet, one byte at a time, silent connections, more
connections than max-clients. A client link connected to a hostile listener that answers with
garbage. Bounded: a fixed seed, fixed sizes, every wait with a deadline. Afterwards no
exception reached a callback, the hostile connections are all gone (closed, counted), the
legitimate client still gets through both ways, and every pooled buffer came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from tests.io.hostile import hostile_datagrams
from tests.io.live_pair import tls as _tls
from tests.io.tcp_pair import HAND_WINDOW, MAX_CONNECTIONS, TcpPair
from tunnel.io.client_link import ClientLinkDriver, RemoteLink
from tunnel.io.conn_driver import ConnDriver
from tunnel.io.device import MemoryDevice
from tunnel.protocol.client import Client
from tunnel.runtime import Timers, make_frame, make_pool, session_settings

pytestmark = pytest.mark.asyncio

SEED = int(os.environ.get("FUZZ_SEED", "10"))


def framed(packet: bytes) -> bytes:
    return struct.pack("!H", len(packet)) + packet


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def send_then(addr: tuple[str, int], data: bytes, rng: random.Random, *,
                    reset: bool = False, linger: float = 0.0) -> None:
    """One connection: `data` in random pieces, then a close (or a reset) after `linger`."""
    try:
        reader, writer = await asyncio.open_connection(*addr)
    except OSError:
        return  # the listener's backlog was full: that is the server defending itself
    try:
        at = 0
        while at < len(data) and not writer.is_closing():
            size = rng.choice((1, 3, 100, 1500, 9000))
            writer.write(data[at:at + size])
            at += size
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        if linger:
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(), linger)  # until the server closes
    finally:
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def trickle(addr: tuple[str, int], data: bytes, delay: float) -> None:
    """A byte at a time (slowloris), until the server closes or the data is all out."""
    with contextlib.suppress(OSError):
        _reader, writer = await asyncio.open_connection(*addr)
        try:
            for i in range(len(data)):
                if writer.is_closing():
                    break
                writer.write(data[i:i + 1])
                await writer.drain()
                await asyncio.sleep(delay)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def assert_no_errors_no_leak(*drivers: ConnDriver) -> None:
    for driver in drivers:
        assert driver.stats.errors == 0, "an exception escaped into a callback"
        assert driver.faults.count == 0
        assert driver.pool.stats.in_use == 0, driver.pool.stats
        assert driver.arena.live_entries == 0, driver.arena.live_entries


async def test_hostile_connections_stop_nothing_and_leak_nothing() -> None:
    rng = random.Random(SEED)
    async with TcpPair() as pair:
        await pair.exchange()
        server, client = pair.drivers()
        addr = pair.server.sock.getsockname()[:2]
        session = pair.server_endpoint.sessions[0]
        max_packet = server.max_packet
        datagrams = [d for d in hostile_datagrams(rng, session.peer_id or 0)
                     if 0 < len(d) <= max_packet]
        stream = b"".join(framed(d) for d in datagrams)
        attacks: list[Awaitable[None]] = [
            send_then(addr, stream, rng, linger=1.0),  # packets the protocol must refuse
            send_then(addr, struct.pack("!H", 0) + b"after", rng, linger=1.0),  # length 0
            send_then(addr, struct.pack("!H", 0xFFFF) + rng.randbytes(3000), rng, linger=1.0),
            send_then(addr, struct.pack("!H", max_packet + 1), rng, linger=1.0),
            send_then(addr, rng.randbytes(200_000), rng, linger=1.0),  # random lengths
            send_then(addr, b"\x05", rng),  # half a prefix, then gone
            send_then(addr, framed(rng.randbytes(1400))[:700], rng),  # half a packet
            send_then(addr, framed(rng.randbytes(1400))[:900], rng, reset=True),
            send_then(addr, stream[:50_000], rng, reset=True),
            send_then(addr, b"", rng, linger=HAND_WINDOW + 3),  # silent: hand-window closes it
            trickle(addr, framed(rng.randbytes(40)), 0.05),
        ]
        await asyncio.wait_for(asyncio.gather(*attacks), 60)
        # More connections than max-clients at once: the extra ones are accepted and closed.
        flood = [send_then(addr, rng.randbytes(10), rng, linger=0.5)
                 for _ in range(MAX_CONNECTIONS + 8)]
        await asyncio.wait_for(asyncio.gather(*flood), 60)

        # Every hostile connection is closed (by the framing, the protocol's refusal, the peer
        # or the hand-window), only the legitimate one stays.
        assert await wait_until(lambda: server.stats.connections_open == 1, HAND_WINDOW + 10), (
            server.stats)
        stats = server.stats
        assert stats.framing_errors >= 3, stats  # lengths 0, 0xFFFF and max + 1 at least
        assert stats.connections_refused >= 1, stats
        assert stats.half_open_closed >= 1, stats
        assert pair.server_endpoint.sessions == [session]
        assert session.closed is None
        print(f"\nhostile TCP peers: {stats.connections_accepted} accepted, "
              f"{stats.connections_refused} refused, {stats.framing_errors} framing errors, "
              f"{stats.half_open_closed} half-open closed, {stats.udp_rx} packets read, "
              f"drops {dict(pair.server_endpoint.drops.counts)}")
        await pair.exchange(50)  # the legitimate client still gets through, both ways
        await asyncio.sleep(0.2)
        assert_no_errors_no_leak(server, client)


async def hostile_listener(rng: random.Random, answers: list[bytes]) -> tuple[
        asyncio.Server, list[int]]:
    """A TCP listener that answers each connection with the next of `answers`, then closes."""
    served: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(len(served))
        data = answers[min(len(served) - 1, len(answers) - 1)]
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.3)
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), served


async def test_a_client_link_to_a_hostile_server_stops_nothing_and_leaks_nothing() -> None:
    rng = random.Random(SEED + 1)
    loop = asyncio.get_running_loop()
    answers = [
        struct.pack("!H", 0),  # a length of 0
        struct.pack("!H", 0xFFFF) + rng.randbytes(100),
        b"".join(framed(d) for d in hostile_datagrams(rng, 1) if 0 < len(d) <= 1500),
        rng.randbytes(50_000),
        b"\x00",
    ]
    listener, served = await hostile_listener(rng, answers)
    remote = listener.sockets[0].getsockname()[:2]
    timers = Timers(ping=10, ping_restart=60, hand_window=5)
    # Five remotes (the same address): each lost link moves to the next, as stock does.
    client = Client(
        session_settings(is_client=True, tls=_tls("client"), timers=timers,
                         proto="TCPv4_CLIENT"),
        [remote] * len(answers), loop.time(), reconnect=True, retry=(0.1, 300.0),
    )
    pool = make_pool(make_frame(stream=True))
    device = MemoryDevice(on_write=lambda view: None)
    driver = ClientLinkDriver(loop, client, client,
                              [RemoteLink(tcp=True, family=socket.AF_INET)] * len(answers),
                              device, pool)
    driver.start()
    try:
        assert await wait_until(lambda: len(served) >= len(answers), 30), served
        await asyncio.sleep(0.5)
        assert driver.stats.framing_errors >= 2, driver.stats  # the two bad lengths
        assert client.session.send_key is None  # nothing of it became a tunnel
        print(f"\nclient link vs a hostile server: {len(served)} connections, "
              f"{driver.stats.framing_errors} framing errors, {driver.stats.udp_rx} packets "
              f"read, drops {dict(client.drops.counts)}")
        device.inject(b"\x45" + bytes(19))  # the device path still runs (nowhere to go)
        await asyncio.sleep(0.1)
    finally:
        driver.stop()
        device.close()
        listener.close()
        await listener.wait_closed()
    assert_no_errors_no_leak(driver)
