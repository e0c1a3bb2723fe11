#!/usr/bin/env python3
"""bench_tun_reads: process time per packet of `TunDevice.read_packet` (root).

In a private network namespace of its own (it re-runs itself under `unshare -n`), one TUN
device with a route; a UDP socket sends bursts of datagrams to an address behind it and the
device reads them back as the driver's batch does (`outbound_batch`: a lone packet ends at
`waiting()`). Only the reads are timed (`time.thread_time`), after a warm-up (numpy's import
on the first long checksum). With `tso` the device has TSO reads (TUNSETOFFLOAD): every UDP
checksum is left partial and completed here (tunnel/io/partial_csum.py), which is what this
measures against plain reads; where the extension is built, once with the read-ahead's
Python loop and once with its native one (tunnel/_readahead.c).

Usage: scripts/bench_tun_reads.py [SIZE,...] [BURST,...]   (default 64,600,1400 and 1,32)
Compare trees by running it with another tree's interpreter/checkout on the path.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tunnel.io.netlink import configure_device
from tunnel.io.tun import TunDevice

PACKETS = 20000
TARGET = ("10.77.0.2", 9)


def per_packet(tso: bool, size: int, burst: int, native: bool = False) -> float:
    """Microseconds of read time per packet for PACKETS datagrams of `size` bytes (`native`:
    the TSO read-ahead's native loop)."""
    with TunDevice.open("tb%d", tso=tso) as dev, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if dev.tso != tso:
            raise SystemExit("the kernel refused TUNSETOFFLOAD")
        if native and not dev.native_read_ahead:
            raise SystemExit("the extension's read-ahead is not built")
        dev.native_read_ahead = native
        Path(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6").write_text("1")
        configure_device(dev.name, mtu=1500,
                         addresses=[ipaddress.IPv4Interface("10.77.0.1/24")])
        room = memoryview(bytearray(2048))
        payload = b"x" * size
        spent, got, rounds = 0.0, 0, 0
        while got < PACKETS:
            for _ in range(burst):
                sock.sendto(payload, TARGET)
            began = time.thread_time()
            read = 0
            while dev.read_packet(room):
                read += 1
                if read == 1 and not dev.waiting():
                    break
            if rounds >= 2:  # the first two are the warm-up
                spent += time.thread_time() - began
                got += read
            rounds += 1
        return spent / got * 1e6


def main() -> int:
    if os.environ.get("BENCH_TUN_READS_INNER") != "1":
        env = dict(os.environ, BENCH_TUN_READS_INNER="1")
        return subprocess.run(["unshare", "-n", sys.executable, __file__, *sys.argv[1:]],
                              env=env).returncode
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sizes = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "64,600,1400").split(",")]
    bursts = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,32").split(",")]
    with TunDevice.open("tb%d", tso=True) as probe:
        native = probe.native_read_ahead
    print("| datagram bytes | burst | plain us/packet | TSO, Python loop | TSO/plain"
          + (" | TSO, native loop | native/plain |" if native else " |"))
    print("|---|---|---|---|---|" + ("---|---|" if native else ""))
    for size in sizes:
        for burst in bursts:
            plain, tso = per_packet(False, size, burst), per_packet(True, size, burst)
            row = f"| {size} | {burst} | {plain:.2f} | {tso:.2f} | {tso / plain:.2f}x |"
            if native:
                fast = per_packet(True, size, burst, True)
                row += f" {fast:.2f} | {fast / plain:.2f}x |"
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
