"""An ICMP echo responder behind a TUN device, for tests/e2e/test_tun.py.

Run inside a test namespace: it opens a TUN device, configures it through tunnel.io.netlink,
writes a ready file, then answers every ICMP/ICMPv6 echo request the kernel routes into the
device (to any address but its own) - in place, in the pooled buffer the request was read
into. Bounded: it exits by itself after `--max-replies` replies or `--seconds`, whichever comes
first, and prints one summary line `replies=N v4=N v6=N rx=N tx=N tx_dropped=N in_use=N`.

    python -m tests.e2e.tun_responder --name tt0 --address 10.1.2.1/24 --ready /tmp/ready
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import struct
import sys
import time
from pathlib import Path

from core import Buffer, BufferPool, FrameBuilder
from tunnel.io.netlink import add_routes, configure_device
from tunnel.io.tun import TunDevice

BATCH = 32  # packets drained per readiness, as the tunnel does
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58


def inet_checksum(data: memoryview | bytes, initial: int = 0) -> int:
    """RFC 1071 ones'-complement sum, complemented."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total: int = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _swap(pkt: memoryview, a: int, b: int, size: int) -> None:
    first = bytes(pkt[a : a + size])
    pkt[a : a + size] = pkt[b : b + size]
    pkt[b : b + size] = first


def echo_reply_v4(pkt: memoryview) -> bool:
    """Turn an IPv4 echo request into its reply in place; False if it is not one."""
    ihl = (pkt[0] & 0x0F) * 4
    if len(pkt) < ihl + 8 or pkt[9] != IPPROTO_ICMP or pkt[ihl] != ICMP_ECHO_REQUEST:
        return False
    # Swapping source and destination leaves the IP header checksum as it was (a sum).
    _swap(pkt, 12, 16, 4)
    pkt[ihl] = ICMP_ECHO_REPLY
    pkt[ihl + 2 : ihl + 4] = b"\0\0"
    struct.pack_into("!H", pkt, ihl + 2, inet_checksum(pkt[ihl:]))
    return True


def echo_reply_v6(pkt: memoryview) -> bool:
    """Turn an IPv6 echo request (no extension headers) into its reply in place."""
    if len(pkt) < 48 or pkt[6] != IPPROTO_ICMPV6 or pkt[40] != ICMPV6_ECHO_REQUEST:
        return False
    _swap(pkt, 8, 24, 16)
    pkt[40] = ICMPV6_ECHO_REPLY
    pkt[42:44] = b"\0\0"
    icmp = pkt[40:]
    # The ICMPv6 checksum covers a pseudo-header: addresses, upper-layer length, next header.
    pseudo = bytes(pkt[8:40]) + struct.pack("!IxxxB", len(icmp), IPPROTO_ICMPV6)
    struct.pack_into("!H", pkt, 42, inet_checksum(pseudo + bytes(icmp)))
    return True


def answer(buf: Buffer) -> int:
    """Rewrite `buf` into an echo reply; the IP version answered, 0 if it is no request."""
    pkt = buf.data
    version = pkt[0] >> 4
    if version == 4 and echo_reply_v4(pkt):
        return 4
    if version == 6 and echo_reply_v6(pkt):
        return 6
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", action="append", default=[], type=ipaddress.ip_interface)
    parser.add_argument("--route", action="append", default=[],
                        help="NETWORK or NETWORK,GATEWAY (repeatable)")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--max-replies", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args(argv)

    frame = FrameBuilder(tun_mtu=args.mtu).finalize()
    pool = BufferPool(frame, BATCH)
    replies = {4: 0, 6: 0}
    with TunDevice.open(args.name) as dev:
        configure_device(dev.name, mtu=args.mtu, addresses=args.address)
        routes = []
        for spec in args.route:
            net, _, gateway = spec.partition(",")
            routes.append(
                (ipaddress.ip_network(net), ipaddress.ip_address(gateway) if gateway else None)
            )
        add_routes(dev.name, routes)
        args.ready.write_text(dev.name)

        poller = select.poll()
        poller.register(dev.fileno(), select.POLLIN)
        deadline = time.monotonic() + args.seconds
        while sum(replies.values()) < args.max_replies:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            for _ in range(BATCH):
                buf = pool.acquire()
                try:
                    if not dev.read_into(buf):
                        break
                    # The packet landed after the frame's headroom, where a tunnel prepends.
                    assert buf.offset == frame.headroom, (buf.offset, frame.headroom)
                    version = answer(buf)
                    if version and dev.write(buf.data):
                        replies[version] += 1
                finally:
                    pool.release(buf)
        print(
            f"replies={sum(replies.values())} v4={replies[4]} v6={replies[6]} "
            f"rx={dev.rx_packets} tx={dev.tx_packets} tx_dropped={dev.tx_dropped} "
            f"in_use={pool.stats.in_use}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
