"""The datagram `Driver` over a fake TUN: `MemoryDevice(offload=True)` is a real in-memory
`PacketDevice` that reads and writes virtio-net frames as a TUN with IFF_VNET_HDR does (a GSO
frame written to it comes out as the packets the kernel would cut from it), real UDP sockets
on 127.0.0.1, a real TLS handshake (tests/io/tunnel_pair.py).

What the data path promises (tunnel/io/datapath.py): packets arrive whole and in order; the
consecutive segments of a TCP flow enter the device as GSO frames; every packet is counted
once where it went (sent, delivered, refused by the device, without a route); a full device
loses packets, not the tunnel; nothing is left in the pool or the arena.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest

from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp
from tunnel.io.datapath import DeviceOutput
from tunnel.io.device import MemoryDevice
from tunnel.protocol.checksum import internet_sum

pytestmark = pytest.mark.asyncio

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
TIMESTAMPS = bytes([1, 1, 8, 10]) + struct.pack("!II", 7, 9)


def tcp_flow(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, count: int,
             mss: int = 1200) -> list[bytes]:
    """`count` consecutive segments of one TCP flow, every checksum right, the last pushed:
    what a TCP sender's kernel puts on a TUN."""
    out = []
    for i in range(count):
        payload = bytes((i + j) % 251 for j in range(mss))
        flags = 0x18 if i == count - 1 else 0x10
        tcp = bytearray(_TCP.pack(40000, 5201, 1000 + i * mss, 77, 0x80, flags, 500, 0, 0))
        tcp += TIMESTAMPS
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, len(tcp) + mss)
        check = ~internet_sum(pseudo + tcp + payload) & 0xFFFF
        struct.pack_into("!H", tcp, 16, check)
        ip = bytearray(_IP.pack(0x45, 0, 20 + len(tcp) + mss, 100 + i, 0x4000, 64, 6, 0,
                                src.packed, dst.packed))
        struct.pack_into("!H", ip, 10, ~internet_sum(ip) & 0xFFFF)
        out.append(bytes(ip + tcp + payload))
    return out


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def assert_clean(pair: TunnelPair) -> None:
    for side in (pair.server, pair.client):
        assert side.pool.stats.in_use == 0, side.pool.stats
        assert side.driver.arena.live_entries == 0
        assert side.driver.stats.errors == 0, side.driver.stats


async def test_a_tcp_flow_enters_the_device_as_gso_frames_and_comes_out_byte_exact() -> None:
    async with TunnelPair(offload=True) as pair:
        assert pair.client_vip is not None
        server_dev = pair.server.device
        assert server_dev.offload and server_dev.read_offset == 10
        await pair.exchange(3)
        frames, gso = server_dev.frames, server_dev.gso_frames
        flow = tcp_flow(pair.client_vip, SERVER_VIP, 40)
        pair.server.arrived.clear()
        for packet in flow:
            pair.client.device.inject(packet)
        await wait_for(lambda: len(pair.server.arrived) >= len(flow))
        # The fake kernel cut the merged frames again: the very bytes that went in, in order.
        assert pair.server.arrived == flow
        # ... and they entered it as runs, not one frame per segment.
        assert server_dev.gso_frames > gso
        assert server_dev.frames - frames < len(flow)
        assert_clean(pair)


async def test_every_packet_is_counted_once_where_it_went() -> None:
    async with TunnelPair(offload=True) as pair:
        assert pair.client_vip is not None
        await pair.exchange(2)
        client, server = pair.client.driver.stats, pair.server.driver.stats
        c_tun_rx, c_udp_tx = client.tun_rx, client.udp_tx
        s_udp_rx, s_tun_tx = server.udp_rx, server.tun_tx
        count = 25
        for i in range(count):
            pair.client.device.inject(ipv4_udp(pair.client_vip, SERVER_VIP, b"c%04d" % i))
        await wait_for(lambda: server.tun_tx - s_tun_tx >= count)
        assert client.tun_rx - c_tun_rx == count
        assert client.udp_tx - c_udp_tx == count
        assert server.udp_rx - s_udp_rx == count
        assert server.tun_tx - s_tun_tx == count and server.tun_tx_dropped == 0
        # A packet for an address no client has: no route, counted, nothing sent.
        no_route, s_udp_tx = server.no_route, server.udp_tx
        pair.server.device.inject(ipv4_udp(SERVER_VIP, ipaddress.IPv4Address("10.8.9.9"), b"?"))
        await wait_for(lambda: server.no_route == no_route + 1)
        assert server.udp_tx == s_udp_tx
        assert_clean(pair)


async def test_a_full_device_loses_packets_not_the_tunnel() -> None:
    async with TunnelPair(offload=True) as pair:
        assert pair.client_vip is not None
        await pair.exchange(2)
        server = pair.server
        refuse = True
        arrived = server.arrived

        def sink(view: memoryview) -> bool:
            if refuse:
                return False  # the kernel's queue is full
            arrived.append(bytes(view))
            return True

        server.device.on_write = sink
        stats = server.driver.stats
        dropped = stats.tun_tx_dropped
        flow = tcp_flow(pair.client_vip, SERVER_VIP, 8)
        for packet in flow:
            pair.client.device.inject(packet)
        await wait_for(lambda: stats.tun_tx_dropped >= dropped + len(flow))
        refuse = False
        await pair.exchange(5)  # and the tunnel still carries packets both ways
        assert_clean(pair)


async def test_plain_devices_are_written_one_packet_at_a_time() -> None:
    async with TunnelPair() as pair:
        assert pair.client_vip is not None
        assert not pair.server.device.offload
        flow = tcp_flow(pair.client_vip, SERVER_VIP, 10)
        pair.server.arrived.clear()
        for packet in flow:
            pair.client.device.inject(packet)
        await wait_for(lambda: len(pair.server.arrived) >= len(flow))
        assert pair.server.arrived == flow
        assert pair.server.driver.stats.tun_tx >= len(flow)
        assert_clean(pair)


async def test_device_output_chooses_coalescing_by_the_device() -> None:
    with MemoryDevice(offload=True) as fake_tun, MemoryDevice() as plain:
        assert DeviceOutput(fake_tun).coalescer is not None
        assert DeviceOutput(plain).coalescer is None
