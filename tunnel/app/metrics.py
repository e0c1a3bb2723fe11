"""`--metrics-listen ADDR:PORT`: a Prometheus endpoint (GET /metrics) on the event loop.

Built on the maintained `prometheus_client` package: its metric families and text exposition
format, and its Histogram for the event-loop lag. Values are read from the running tunnel at
scrape time (a custom collector), so the data path pays nothing for them; the HTTP side is a
small asyncio server on the tunnel's own loop (not prometheus_client's thread), so a scrape
reads the tables without racing the loop. Requests are bounded (size, time, concurrency).

Per client (server): bytes and packets in/out, connected since, handshakes and rekeys, replay
and auth-failure drops. Whole process: link/TUN totals, drops by cause, refused clients,
packet-pool and arena counters, the driver's counters, and the event loop's lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tunnel import __version__
from tunnel.protocol.events import ClientRefused, Event, HandshakeComplete

if TYPE_CHECKING:
    from tunnel.app.runtime import Runtime

__all__ = ["MetricsError", "MetricsServer"]

MAX_REQUEST = 8192  # bytes of request line + headers
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 16
LAG_INTERVAL = 0.25
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CLIENT_LABELS = ["common_name", "real_address", "virtual_address", "client_id"]


class MetricsError(Exception):
    """The endpoint cannot start; the text is the one-line reason."""


class _Collector(Collector):
    def __init__(self, server: MetricsServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        runtime = self.server.runtime
        info = GaugeMetricFamily("tunnel_info", "The running tunnel", labels=["version", "role"])
        info.add_metric([__version__, runtime.role if runtime is not None else ""], 1)
        yield info
        counts = self.server.counts
        for name, help_text in (("handshakes", "TLS handshakes completed (with renegotiations)"),
                                ("rekeys", "Renegotiations (soft resets) completed"),
                                ("refused_clients", "Clients refused during the handshake")):
            yield _counter(f"tunnel_{name}", help_text, counts[name])
        if runtime is None or runtime.driver is None:
            return
        yield from _process_metrics(runtime)
        if runtime.role == "server":
            yield from self.server.client_metrics(runtime)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _process_metrics(runtime: Runtime) -> Iterator[Metric]:
    endpoint = runtime.endpoint  # type: ignore[attr-defined]  # the Server or the Client
    totals = endpoint.traffic
    for name, value, what in (
        ("link_received_bytes", totals.link_rx, "Bytes received on the link (UDP/TCP payloads)"),
        ("link_sent_bytes", totals.link_tx, "Bytes sent on the link"),
        ("link_received_packets", totals.link_rx_packets, "Datagrams received on the link"),
        ("link_sent_packets", totals.link_tx_packets, "Datagrams sent on the link"),
        ("tun_read_bytes", totals.tun_rx, "Bytes read from the TUN device"),
        ("tun_written_bytes", totals.tun_tx, "Bytes written to the TUN device"),
    ):
        yield _counter(f"tunnel_{name}", what, value)
    family = CounterMetricFamily("tunnel_dropped_packets", "Input refused, by cause",
                                 labels=["cause"])
    for cause, value in endpoint.drops.counts.items():
        family.add_metric([cause], value)
    yield family
    pool = runtime.pool.stats  # type: ignore[attr-defined]
    yield GaugeMetricFamily("tunnel_pool_buffers", "Packet buffers in the pool", value=pool.size)
    yield GaugeMetricFamily("tunnel_pool_in_use", "Packet buffers in use", value=pool.in_use)
    yield GaugeMetricFamily("tunnel_pool_high_water", "Most buffers in use at once",
                            value=pool.high_water)
    yield _counter("tunnel_pool_acquires", "Buffers taken from the pool", pool.acquires)
    yield _counter("tunnel_pool_releases", "Buffers given back", pool.releases)
    yield _counter("tunnel_pool_exhaustions", "Times the pool was empty", pool.exhaustions)
    assert runtime.driver is not None
    runs = runtime.driver.runs
    yield GaugeMetricFamily("tunnel_run_pool_buffers", "Run buffers (GSO/GRO, coalescing)",
                            value=runs.stats.size)
    yield GaugeMetricFamily("tunnel_run_pool_in_use", "Run buffers in use",
                            value=runs.stats.in_use)
    yield GaugeMetricFamily("tunnel_run_pool_bytes", "Memory of the run pool",
                            value=runs.slab_bytes)
    arena = runtime.arena_counters()
    yield _counter("tunnel_arena_iterations", "Arena iterations (one per batch)",
                   arena.iterations)
    yield _counter("tunnel_arena_entries_freed", "Arena entries freed", arena.entries_freed)
    yield _counter("tunnel_arena_bytes_freed", "Arena bytes freed", arena.bytes_freed)
    yield _counter("tunnel_arena_detached", "Arena entries detached", arena.detached)
    assert runtime.driver is not None
    stats = runtime.driver.stats
    for field in dataclasses.fields(stats):
        yield _counter(f"tunnel_driver_{field.name}", f"Driver counter {field.name}",
                       getattr(stats, field.name))


class MetricsServer:
    def __init__(self, address: tuple[str, int], log: logging.Logger) -> None:
        self.address = address
        self.log = log
        self.runtime: Runtime | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.lag = Histogram("tunnel_event_loop_lag_seconds",
                             "How late the event loop ran a timer (sampled every 0.25 s)",
                             buckets=LAG_BUCKETS, registry=self.registry)
        self.counts = {"handshakes": 0, "rekeys": 0, "refused_clients": 0}
        self._server: asyncio.Server | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._active = 0

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self) -> None:
        host, port = self.address
        try:
            self._server = await asyncio.start_server(self._serve, host, port,
                                                      reuse_address=True)
        except OSError as exc:
            raise MetricsError(f"cannot open the metrics endpoint {host}:{port}: "
                               f"{exc.strerror or exc}") from None
        bound = self._server.sockets[0].getsockname()
        self.address = (bound[0], bound[1])
        self.log.info("metrics: Prometheus endpoint on http://%s:%d/metrics", *self.address)
        self._lag_task = asyncio.get_running_loop().create_task(self._measure_lag())

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def attach(self, runtime: Runtime) -> None:
        self.runtime = runtime
        runtime.event_hooks.append(self.on_event)

    def on_event(self, event: Event) -> None:
        if isinstance(event, HandshakeComplete):
            self.counts["handshakes"] += 1
            if event.renegotiation:
                self.counts["rekeys"] += 1
        elif isinstance(event, ClientRefused):
            self.counts["refused_clients"] += 1

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.lag.observe(max(0.0, loop.time() - before - LAG_INTERVAL))

    # -- per client ---------------------------------------------------------------------------

    def client_metrics(self, runtime: Runtime) -> Iterator[Metric]:
        peers = runtime.peers  # type: ignore[attr-defined]
        families = {
            name: CounterMetricFamily(f"tunnel_client_{name}", what, labels=CLIENT_LABELS)
            for name, what in (
                ("received_bytes", "Link bytes received from the client"),
                ("sent_bytes", "Link bytes sent to the client"),
                ("received_packets", "Datagrams received from the client"),
                ("sent_packets", "Datagrams sent to the client"),
                ("handshakes", "TLS handshakes of this client (initial + renegotiations)"),
                ("rekeys", "Renegotiations of this client"),
                ("replay_drops", "Authentic data packets refused by the replay window"),
                ("auth_failure_drops", "Data packets whose tag did not verify"),
            )
        }
        since = GaugeMetricFamily("tunnel_client_connected_since_seconds",
                                  "When the client connected (Unix time)", labels=CLIENT_LABELS)
        connected = GaugeMetricFamily("tunnel_clients", "Connected clients",
                                      value=len(peers.peers))
        for peer in peers.in_order():
            labels = [peer.common_name, f"{peer.address[0]}:{peer.address[1]}",
                      peer.virtual_address or "", str(peer.client_id)]
            traffic = peer.traffic
            session = peer.session
            for name, value in (
                ("received_bytes", traffic.link_rx), ("sent_bytes", traffic.link_tx),
                ("received_packets", traffic.link_rx_packets),
                ("sent_packets", traffic.link_tx_packets),
                ("handshakes", 1 + session.renegotiations), ("rekeys", session.renegotiations),
                ("replay_drops", traffic.replay_drops),
                ("auth_failure_drops", traffic.auth_drops),
            ):
                families[name].add_metric(labels, value)
            since.add_metric(labels, peer.connected_since)
        yield connected
        yield since
        yield from families.values()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._active += 1
        try:
            if self._active > MAX_CONNECTIONS:
                await self._respond(writer, 503, b"too many scrapes at once\n", "text/plain")
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ConnectionError):
                return
            if len(head) > MAX_REQUEST:
                await self._respond(writer, 431, b"request too large\n", "text/plain")
                return
            words = head.split(b"\r\n", 1)[0].split()
            if len(words) < 2 or words[0] not in (b"GET", b"HEAD"):
                await self._respond(writer, 405, b"only GET\n", "text/plain")
            elif words[1].split(b"?", 1)[0] in (b"/metrics", b"/"):
                await self._respond(writer, 200, generate_latest(self.registry),
                                    CONTENT_TYPE_LATEST, head_only=words[0] == b"HEAD")
            else:
                await self._respond(writer, 404, b"try /metrics\n", "text/plain")
        except Exception:  # a scrape must never hurt the tunnel
            self.log.exception("metrics: internal error while answering a scrape")
        finally:
            self._active -= 1
            writer.close()

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str,
                       head_only: bool = False) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large", 503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                     f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
                     f"\r\n".encode())
        if not head_only:
            writer.write(body)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
