"""Server CPU per handshake of the sans-I/O engine, in process (issue 15 item 2).

`scripts/loadgen` measures the whole server (sockets, the event loop, the app layer) against
stock, under a shared machine's noise; this times only the protocol engine's part, in one
process, with nothing else on the path: one `Server` built from loadgen's server config (EC
P-256 PKI, AES-256-GCM, `duplicate-cn`) and N `Client` engines from its client config, the
datagrams handed over in memory. Each client does the full exchange (reset, TLS handshake,
key-method 2, PUSH_REQUEST/PUSH_REPLY); every server call the I/O driver makes (`receive`,
`datagrams_to_send`, `next_event`, `get_timer`, `end_iteration`) is timed with
`time.thread_time`, the clients' calls are not. Prints the server's CPU per handshake and
the datagrams each way per handshake; `--profile FILE` writes a cProfile of the server calls
only (`python -m pstats FILE`).

    .venv/bin/python scripts/bench_handshake.py [-n 300] [--window 32] [--rounds 3]

Only public APIs, so the same script times an older tree (`PYTHONPATH=<tree> python
scripts/bench_handshake.py`: the server and the clients come from that tree then).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.machinery
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent

from tunnel.app.build import (  # noqa: E402
    build_client,
    build_server,
    build_server_settings,
    build_session_settings,
)
from tunnel.config import load_config  # noqa: E402
from tunnel.protocol.events import PushApplied  # noqa: E402
from tunnel.runtime import make_pool  # noqa: E402

SERVER = ("10.99.0.1", 51820)
clock = time.thread_time


def load_loadgen() -> ModuleType:
    """scripts/loadgen as a module (once): its server and client configs."""
    if "loadgen" in sys.modules:
        return sys.modules["loadgen"]
    path = REPO / "scripts" / "loadgen"
    loader = importlib.machinery.SourceFileLoader("loadgen", str(path))
    spec = importlib.util.spec_from_loader("loadgen", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["loadgen"] = mod  # dataclasses look their module up there
    loader.exec_module(mod)
    return mod


def make_pki(dest: Path) -> Path:
    """The same PKI as scripts/bench_netns' (EC P-256 CA, server and client certificates)."""
    bench: ModuleType = load_loadgen().load_bench()
    with open(dest / "pki.log", "w"):
        pass
    out: Path = bench.make_pki(dest, dest)
    return out


class ServerClock:
    """The server's calls, timed (and profiled when asked)."""

    def __init__(self, server: Any, profile: cProfile.Profile | None) -> None:
        self.server = server
        self.profile = profile
        self.cpu = 0.0

    def __enter__(self) -> ServerClock:
        if self.profile is not None:
            self.profile.enable()
        self._t0 = clock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += clock() - self._t0
        if self.profile is not None:
            self.profile.disable()


def one_round(n: int, window: int, work: Path, pki: Path, profile: cProfile.Profile | None,
              ) -> dict[str, float]:
    loadgen = load_loadgen()
    server_conf, client_conf = loadgen.configs(pki, work / "conf", SERVER[0], n + 64)
    scfg, ccfg = load_config(server_conf), load_config(client_conf)
    now = time.monotonic()
    settings = build_server_settings(scfg, build_session_settings(scfg, ipv6_link=False))
    server = build_server(scfg, settings, now)
    csettings = build_session_settings(ccfg, ipv6_link=False)
    pool = make_pool(loadgen.build_frame(scfg), 16)
    timed = ServerClock(server, profile)
    clients: list[Any] = []
    addrs: list[tuple[str, int]] = []
    done: set[int] = set()
    to_server: list[tuple[bytes, tuple[str, int]]] = []
    up = down = 0

    def serve(batch: list[tuple[bytes, tuple[str, int]]], now: float) -> None:
        nonlocal down
        with timed:
            for datagram, addr in batch:
                buf = pool.acquire()
                try:
                    buf.append(datagram)
                    server.receive(buf, addr, now)
                finally:
                    pool.release(buf)
            out = server.datagrams_to_send(now)
            while server.next_event() is not None:
                pass
            server.get_timer()
            server.end_iteration()
        down += len(out)
        for datagram, addr in out:
            i = addr[1] - 20000
            buf = pool.acquire()
            try:
                buf.append(datagram)
                clients[i].receive(buf, SERVER, now)
            finally:
                pool.release(buf)
            pump(i, now)

    def pump(i: int, now: float) -> None:
        nonlocal up
        client = clients[i]
        for datagram, _ in client.datagrams_to_send(now):
            to_server.append((datagram, addrs[i]))
            up += 1
        while (event := client.next_event()) is not None:
            if isinstance(event, PushApplied):
                done.add(i)

    t_end = time.monotonic() + 120
    while len(done) < n and time.monotonic() < t_end:
        now = time.monotonic()
        while len(clients) < n and len(clients) - len(done) < window:
            i = len(clients)
            clients.append(build_client(ccfg, csettings, [SERVER], now))
            addrs.append(("10.99.0.2", 20000 + i))
            pump(i, now)
        if to_server:
            batch, to_server[:] = list(to_server), []
            serve(batch, now)
        else:  # nothing in flight: the timers (a PUSH_REQUEST waits for one)
            for i in range(len(clients)):
                if i not in done:
                    clients[i].handle_timer(now + 1.0)
                    pump(i, now)
            with timed:
                server.handle_timer(now)
    if len(done) < n:
        raise SystemExit(f"only {len(done)} of {n} clients finished")
    return {"ms_per_handshake": 1e3 * timed.cpu / n, "up": up / n, "down": down / n}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("-n", type=int, default=300, help="handshakes per round (300)")
    p.add_argument("--window", type=int, default=32, help="handshakes in flight (32)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, a fresh server each (3)")
    p.add_argument("--profile", type=Path, default=None, help="cProfile of the server calls")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-handshake-") as tmp:
        work = Path(tmp)
        try:
            pki = make_pki(work)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"making the PKI failed: {exc}") from None
        profile = cProfile.Profile() if a.profile is not None else None
        rows = [one_round(a.n, a.window, work / f"r{r}", pki, profile) for r in range(a.rounds)]
    if profile is not None and a.profile is not None:
        profile.dump_stats(str(a.profile))
    ms = [r["ms_per_handshake"] for r in rows]
    print(f"server CPU per handshake: median {statistics.median(ms):.3f} ms "
          f"(min {min(ms):.3f}, rounds: {', '.join(f'{x:.3f}' for x in ms)}); datagrams per "
          f"handshake: {rows[0]['up']:.1f} to the server, {rows[0]['down']:.1f} from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
