#!/usr/bin/env python3
"""In-process cost of one wakeup for one packet: what an idle tunnel pays per hop. No root.

A live server and client (tests/io/tunnel_pair.py: the real Driver, real UDP sockets on
127.0.0.1, in-memory devices). One packet at a time is injected into the client's device and
awaited at the server's, so every readiness callback handles exactly one packet, as on an
interactive tunnel. Prints the median (and 10th percentile) wall time of the client's device
callback (read, seal, send) and of the server's socket callback (read, open, write): the
per-hop Python cost that a round trip pays four times, without the wakeups themselves.

  python3 scripts/bench_wakeup.py [-n 1000] [--tree DIR ...]

`--tree` measures other source trees (e.g. `git archive <commit> | tar -x -C DIR`) in the
same run, interleaved, for before/after ratios. The machine is shared: compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure(count: int, clock_name: str = "wall") -> dict[str, float]:
    """Run in a child whose sys.path starts with the tree under test."""
    from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp
    from tunnel.io import driver
    from tunnel.io.loop import new_event_loop

    times: dict[str, list[int]] = {"device": [], "socket": []}
    # "cpu": the thread's CPU time, which a neighbour preempting us does not inflate (on a
    # shared machine the wall clock mostly measures the neighbours).
    clock = time.thread_time_ns if clock_name == "cpu" else time.perf_counter_ns
    on_socket = driver.Driver._on_socket_readable
    on_device = driver.Driver._on_device_readable

    def timed_socket(self: driver.Driver) -> None:
        t = clock()
        on_socket(self)
        times["socket"].append(clock() - t)

    def timed_device(self: driver.Driver) -> None:
        t = clock()
        on_device(self)
        times["device"].append(clock() - t)

    driver.Driver._on_socket_readable = timed_socket  # type: ignore[method-assign]
    driver.Driver._on_device_readable = timed_device  # type: ignore[method-assign]

    async def run() -> None:
        async with TunnelPair() as pair:
            assert pair.client_vip is not None
            await pair.exchange(5)
            for v in times.values():
                v.clear()
            packet = ipv4_udp(pair.client_vip, SERVER_VIP, b"x" * 64)
            for _ in range(count):
                n = len(pair.server.arrived)
                pair.client.device.inject(packet)
                while len(pair.server.arrived) == n:
                    await asyncio.sleep(0)

    loop = new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    out = {}
    for k, v in times.items():
        v.sort()
        out[f"{k}_p50_us"] = statistics.median(v) / 1e3
        out[f"{k}_p10_us"] = v[len(v) // 10] / 1e3
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--count", type=int, default=1000, help="packets (default 1000)")
    p.add_argument("-r", "--reps", type=int, default=3, help="interleaved repetitions (3)")
    p.add_argument("--tree", action="append", default=[], help="another source tree")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall (perf_counter) or cpu (the thread's CPU time: robust to neighbours)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        sys.path[:0] = [a.child, str(REPO)]  # the tree's tunnel/core; tests from this repo
        print(json.dumps(measure(a.count, a.clock)))
        return 0
    trees = [str(REPO), *a.tree]
    results: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for _ in range(a.reps):
        for tree in trees:
            res = subprocess.run([sys.executable, __file__, "--child", tree, "-n", str(a.count),
                                  "--clock", a.clock],
                                 capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            results[tree].append(json.loads(res.stdout.splitlines()[-1]))
    print("| tree | device callback p50 us | socket callback p50 us | p10 device / socket |")
    print("|---|---|---|---|")
    for tree, rs in results.items():
        def med(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(r[key] for r in rs)
        print(f"| {tree} | {med('device_p50_us'):.1f} | {med('socket_p50_us'):.1f} | "
              f"{med('device_p10_us'):.1f} / {med('socket_p10_us'):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
