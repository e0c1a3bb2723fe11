"""A device that holds packets already taken from the kernel (a TSO TUN's read-ahead) gets
no readiness wakeup for them: a device callback that stopped at its batch limit must come
back for them by itself. Real TSO TUN device in a test namespace as the client's device (the
kernel leaves every UDP checksum partial, so the reads go through the read-ahead), a batch of
4, a burst of 40 datagrams: all of them reach the server through the tunnel, in order.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest

from tests.io.tunnel_pair import SERVER_VIP, TunnelPair
from tests.netns import NetnsPair
from tunnel.io.driver import Driver
from tunnel.io.netlink import configure_device
from tunnel.io.tun import TunDevice

pytestmark = [pytest.mark.asyncio, pytest.mark.root, pytest.mark.ip]

BURST = 40


async def test_a_batch_stopped_at_its_limit_comes_back_for_the_read_ahead() -> None:
    loop = asyncio.get_running_loop()
    with NetnsPair() as ns:
        async with TunnelPair() as pair:
            assert pair.client_vip is not None
            vip = pair.client_vip

            def open_tun() -> tuple[TunDevice, socket.socket]:
                # In a thread: pyroute2's netlink calls run a loop of their own.
                with ns.entered(ns.ns_a):
                    dev = TunDevice.open(ns.ifname("h"), tso=True)
                    Path(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6").write_text("1")
                    configure_device(dev.name, mtu=1400,
                                     addresses=[ipaddress.IPv4Interface(f"{vip}/24")])
                    return dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

            dev, sender = await loop.run_in_executor(None, open_tun)
            assert dev.tso, "the kernel refused TUNSETOFFLOAD"
            client = pair.client
            client.driver.stop()  # the client's in-memory device is replaced by the TUN
            driver = Driver(loop, client.endpoint, client.sock, dev, client.pool, batch=4)
            driver.start()
            try:
                with sender:
                    for n in range(BURST):
                        sender.sendto(b"held%03d" % n + bytes(1000), (str(SERVER_VIP), 9))
                deadline = loop.time() + 10
                while len(pair.server.arrived) < BURST and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                payloads = [packet[28:35] for packet in pair.server.arrived]
                assert payloads == [b"held%03d" % n for n in range(BURST)], driver.stats
                assert driver.stats.errors == 0 and dev.rx_dropped == 0
            finally:
                driver.stop()
                dev.close()
