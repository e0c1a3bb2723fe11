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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent


def measure(count: int, clock_name: str = "wall", offload: bool = False,
            gap: float = 0.0) -> dict[str, float]:
    """Run in a child whose sys.path starts with the tree under test."""
    from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp
    from tunnel.io import driver
    from tunnel.io.loop import new_event_loop

    times: dict[str, list[int]] = {"device": [], "socket": [], "device_c": [], "socket_c": []}
    # "cpu": the thread's CPU time, which a neighbour preempting us does not inflate (on a
    # shared machine the wall clock mostly measures the neighbours). "calls": the Python
    # function calls (and C calls) one callback makes, counted by a profile hook.
    clock = time.thread_time_ns if clock_name == "cpu" else time.perf_counter_ns
    on_socket = driver.Driver._on_socket_readable
    on_device = driver.Driver._on_device_readable
    calls: dict[str, Counter[str]] = {"device": Counter(), "socket": Counter()}

    def counted(kind: str, callback: Callable[[driver.Driver], None],
                self: driver.Driver) -> None:
        seen = calls[kind]
        frames = c_calls = 0

        def hook(frame: FrameType, event: str, arg: object) -> None:
            nonlocal frames, c_calls
            if event == "call":
                frames += 1
                code = frame.f_code
                seen[f"{code.co_name} ({Path(code.co_filename).name})"] += 1
            elif event == "c_call":
                c_calls += 1
                seen[f"C {getattr(arg, '__qualname__', arg)}"] += 1

        sys.setprofile(hook)
        try:
            callback(self)
        finally:
            sys.setprofile(None)
        times[kind].append(frames)
        times[f"{kind}_c"].append(c_calls)

    def timed_socket(self: driver.Driver) -> None:
        if clock_name == "calls":
            return counted("socket", on_socket, self)
        t = clock()
        on_socket(self)
        times["socket"].append(clock() - t)

    def timed_device(self: driver.Driver) -> None:
        if clock_name == "calls":
            return counted("device", on_device, self)
        t = clock()
        on_device(self)
        times["device"].append(clock() - t)

    driver.Driver._on_socket_readable = timed_socket  # type: ignore[method-assign]
    driver.Driver._on_device_readable = timed_device  # type: ignore[method-assign]

    async def run() -> None:
        async with TunnelPair(**({"offload": True} if offload else {})) as pair:
            assert pair.client_vip is not None
            await pair.exchange(5)
            for v in times.values():
                v.clear()
            for c in calls.values():
                c.clear()
            packet = ipv4_udp(pair.client_vip, SERVER_VIP, b"x" * 64)
            for _ in range(count):
                n = len(pair.server.arrived)
                pair.client.device.inject(packet)
                while len(pair.server.arrived) == n:
                    await asyncio.sleep(0)
                if gap:
                    # Idle between packets, as ping's 10 ms: the vCPU halts and the next
                    # wakeup finds caches and branch predictors cold, as on a real tunnel.
                    await asyncio.sleep(gap)

    loop = new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    out: dict[str, float] = {}
    if clock_name == "calls":
        for kind in ("device", "socket"):
            out[f"{kind}_p50_us"] = statistics.median(times[kind])  # Python calls
            out[f"{kind}_p10_us"] = statistics.median(times[f"{kind}_c"])  # C calls
        if sys.stderr.isatty() or True:
            for kind, seen in calls.items():
                print(f"-- {kind} callback, calls per packet:", file=sys.stderr)
                for name, n in seen.most_common():
                    print(f"{n / count:6.2f} {name}", file=sys.stderr)
        return out
    for k in ("device", "socket"):
        v = sorted(times[k])
        out[f"{k}_p50_us"] = statistics.median(v) / 1e3
        out[f"{k}_p10_us"] = v[len(v) // 10] / 1e3
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--count", type=int, default=1000, help="packets (default 1000)")
    p.add_argument("-r", "--reps", type=int, default=3, help="interleaved repetitions (3)")
    p.add_argument("--tree", action="append", default=[], help="another source tree")
    p.add_argument("--clock", choices=("wall", "cpu", "calls"), default="wall",
                   help="wall (perf_counter), cpu (the thread's CPU time: robust to "
                        "neighbours) or calls (Python / C calls per callback, and which)")
    p.add_argument("--gap", type=float, default=0.0, metavar="MS",
                   help="idle this many ms between packets (10: ping's interval; cold wakeups)")
    p.add_argument("--offload", action="store_true",
                   help="devices as TUNs with IFF_VNET_HDR (the coalescer path, as a real TUN)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        sys.path[:0] = [a.child, str(REPO)]  # the tree's tunnel/core; tests from this repo
        print(json.dumps(measure(a.count, a.clock, a.offload, a.gap / 1e3)))
        return 0
    trees = [str(REPO), *a.tree]
    results: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for _ in range(a.reps):
        for tree in trees:
            res = subprocess.run([sys.executable, __file__, "--child", tree, "-n", str(a.count),
                                  "--clock", a.clock, "--gap", str(a.gap),
                                  *(["--offload"] if a.offload else [])],
                                 capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            results[tree].append(json.loads(res.stdout.splitlines()[-1]))
            if a.clock == "calls" and len(results[tree]) == 1:
                print(f"== {tree}\n{res.stderr}")
    if a.clock == "calls":
        print("(calls: the p50 columns are Python calls per callback, the p10 ones C calls)")
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
