"""The `status FILE [SECONDS]` file, in OpenVPN's formats, rewritten atomically.

Server (`status-version` 1, 2 or 3; 2 is what monitoring tools parse):

    TITLE,<version line>
    TIME,2026-11-24 16:28:51,1795537731
    HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,...
    CLIENT_LIST,client,192.0.2.7:51234,10.8.0.2,,3067,3300,2026-11-24 16:27:00,...
    HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
    ROUTING_TABLE,10.8.0.2,client,192.0.2.7:51234,2026-11-24 16:28:50,1795537730
    GLOBAL_STATS,Max bcast/mcast queue length,0
    GLOBAL_STATS,dco_enabled,0
    HEADER,POOL_STATS,... / POOL_STATS,...     (ours: the packet-buffer pool)
    HEADER,RUN_POOL_STATS,... / RUN_POOL_STATS,...  (ours: the transport's 64 KiB run buffers)
    HEADER,CLIENT_MEMORY,... / CLIENT_MEMORY,...    (ours: each connection's arena and pool use)
    HEADER,ARENA_STATS,... / ARENA_STATS,...   (ours: the per-iteration arena)
    HEADER,LINK_STATS,... / LINK_STATS,...     (ours: the driver's packet counters)
    END

Version 3 is the same with tabs; version 1 is OpenVPN's older sectioned layout. A client
writes OpenVPN's "OpenVPN STATISTICS" block whatever the version, as a stock client does.
Our extra rows use new record types (or, in the older layouts, new "name,value" lines), which
the parsers of stock status files skip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import PoolStats
from tunnel.io.conn_driver import ConnStats
from tunnel.io.driver import DriverStats
from tunnel.protocol.drops import CAUSES, MALFORMED
from tunnel.protocol.memory import ConnectionMemory
from tunnel.protocol.traffic import Traffic

__all__ = [
    "ArenaCounters", "ClientRow", "MemoryRow", "StatusSnapshot", "StatusWriter", "drop_counts",
    "memory_row", "render_status",
]

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class ClientRow:
    common_name: str
    real_address: str  # "ip:port"
    virtual_address: str
    bytes_received: int
    bytes_sent: int
    connected_since: float  # wall clock
    client_id: int
    peer_id: int | None
    cipher: str
    last_ref: float  # wall clock of the last packet from it


@dataclass(frozen=True, slots=True)
class ArenaCounters:
    iterations: int
    entries_freed: int
    bytes_freed: int
    detached: int


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """One connection's gc arena and pool use (tunnel/protocol/memory.py)."""

    common_name: str
    real_address: str  # "ip:port"
    peer_id: int | None
    iterations: int  # event-loop iterations that touched the connection
    entries_freed: int
    bytes_freed: int
    detached: int  # buffers that outlived their iteration (kept on EAGAIN)
    live: int  # entries of the arena now (0 between iterations)
    buffers_taken: int  # pool buffers taken for this connection so far


def memory_row(
    common_name: str, address: tuple[str, int], peer_id: int | None, memory: ConnectionMemory
) -> MemoryRow:
    arena = memory.arena
    return MemoryRow(common_name, f"{address[0]}:{address[1]}", peer_id, memory.iterations,
                     arena.entries_freed, arena.bytes_freed, arena.detached,
                     arena.live_entries, memory.buffers_taken)


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    title: str
    now: float  # wall clock
    traffic: Traffic
    pool: PoolStats
    arena: ArenaCounters
    link: DriverStats
    clients: list[ClientRow] | None = field(default=None)  # None: a client's status file
    # Dropped input by cause (tunnel.protocol.drops.CAUSES), the link's malformed included.
    drops: dict[str, int] = field(default_factory=dict)
    # The transport's run buffers (GSO/GRO, TUN coalescing, stream scratch): their RunPool.
    runs: PoolStats | None = None
    run_block: int = 0  # bytes per run block
    # Server: each connection's arena and pool counters.
    memory: list[MemoryRow] = field(default_factory=list)


def drop_counts(
    endpoint_drops: dict[str, int], link: DriverStats, device: object = None
) -> dict[str, int]:
    """The endpoint's drops by cause plus what the driver (and the device: cut or malformed
    packets read from the TUN) refused before it, as malformed."""
    counts = {cause: endpoint_drops.get(cause, 0) for cause in CAUSES}
    counts[MALFORMED] += link.malformed + int(getattr(device, "rx_dropped", 0))
    return counts


def _when(wall: float) -> str:
    return time.strftime(_TIME_FORMAT, time.localtime(wall))


def _field(value: object, sep: str) -> str:
    # A common name is the peer's text: it must not add columns or lines to the file.
    text = str(value)
    return "".join("_" if ch == sep or not ch.isprintable() else ch for ch in text)


def _row(sep: str, *values: object) -> str:
    return sep.join(_field(v, sep) for v in values)


def _our_rows(s: StatusSnapshot, sep: str) -> list[str]:
    pool, arena, link = s.pool, s.arena, s.link
    return [
        _row(sep, "HEADER", "POOL_STATS", "Size", "In Use", "High Water", "Acquires",
             "Releases", "Exhaustions"),
        _row(sep, "POOL_STATS", pool.size, pool.in_use, pool.high_water, pool.acquires,
             pool.releases, pool.exhaustions),
        *_run_rows(s, sep),
        *_memory_rows(s, sep),
        _row(sep, "HEADER", "ARENA_STATS", "Iterations", "Entries Freed", "Bytes Freed",
             "Detached"),
        _row(sep, "ARENA_STATS", arena.iterations, arena.entries_freed, arena.bytes_freed,
             arena.detached),
        _row(sep, "HEADER", "LINK_STATS", "UDP In", "UDP Out", "UDP Out Dropped", "TUN In",
             "TUN Out", "TUN Out Dropped", "No Route", "Malformed", "Internal Errors"),
        _row(sep, "LINK_STATS", link.udp_rx, link.udp_tx, link.udp_tx_dropped, link.tun_rx,
             link.tun_tx, link.tun_tx_dropped, link.no_route, link.malformed, link.errors),
        _row(sep, "HEADER", "DROP_STATS", *(c.title() for c in CAUSES)),
        _row(sep, "DROP_STATS", *(s.drops.get(c, 0) for c in CAUSES)),
        *_tcp_rows(link, sep),
    ]


def _run_rows(s: StatusSnapshot, sep: str) -> list[str]:
    runs = s.runs
    if runs is None:
        return []
    return [
        _row(sep, "HEADER", "RUN_POOL_STATS", "Size", "In Use", "High Water", "Block Bytes",
             "Exhaustions"),
        _row(sep, "RUN_POOL_STATS", runs.size, runs.in_use, runs.high_water, s.run_block,
             runs.exhaustions),
    ]


def _memory_rows(s: StatusSnapshot, sep: str) -> list[str]:
    if s.clients is None:
        return []
    return [
        _row(sep, "HEADER", "CLIENT_MEMORY", "Common Name", "Real Address", "Peer ID",
             "Arena Iterations", "Arena Entries Freed", "Arena Bytes Freed", "Arena Detached",
             "Arena Live", "Pool Buffers Taken"),
        *(_row(sep, "CLIENT_MEMORY", m.common_name, m.real_address,
               "" if m.peer_id is None else m.peer_id, m.iterations, m.entries_freed,
               m.bytes_freed, m.detached, m.live, m.buffers_taken) for m in s.memory),
    ]


def _tcp_rows(link: DriverStats, sep: str) -> list[str]:
    """The TCP transport's connection counters (LINK_STATS' UDP columns count its packets)."""
    if not isinstance(link, ConnStats):
        return []
    return [
        _row(sep, "HEADER", "TCP_STATS", "Open", "Accepted", "Refused (max-clients)", "Closed",
             "Framing Errors", "Half-Open Closed", "Connect Failures"),
        _row(sep, "TCP_STATS", link.connections_open, link.connections_accepted,
             link.connections_refused, link.connections_closed, link.framing_errors,
             link.half_open_closed, link.connect_failures),
    ]


def _our_lines_v1(s: StatusSnapshot) -> list[str]:
    pool, arena = s.pool, s.arena
    return [
        f"Pool size,{pool.size}", f"Pool in use,{pool.in_use}",
        f"Pool high water,{pool.high_water}", f"Pool exhaustions,{pool.exhaustions}",
        *([f"Run pool size,{s.runs.size}", f"Run pool in use,{s.runs.in_use}",
           f"Run pool block bytes,{s.run_block}"] if s.runs is not None else []),
        *(f"Client memory,{m.common_name},{m.real_address},iterations={m.iterations},"
          f"entries_freed={m.entries_freed},bytes_freed={m.bytes_freed},"
          f"detached={m.detached},live={m.live},buffers_taken={m.buffers_taken}"
          for m in s.memory),
        f"Arena iterations,{arena.iterations}", f"Arena entries freed,{arena.entries_freed}",
        f"Arena bytes freed,{arena.bytes_freed}", f"Arena detached,{arena.detached}",
        *(f"Dropped {c},{s.drops.get(c, 0)}" for c in CAUSES),
        f"Internal errors,{s.link.errors}",
    ]


def _server_v2(
    s: StatusSnapshot, clients: list[ClientRow], sep: str, extras: bool = True
) -> list[str]:
    lines = [
        _row(sep, "TITLE", s.title),
        _row(sep, "TIME", _when(s.now), int(s.now)),
        _row(sep, "HEADER", "CLIENT_LIST", "Common Name", "Real Address", "Virtual Address",
             "Virtual IPv6 Address", "Bytes Received", "Bytes Sent", "Connected Since",
             "Connected Since (time_t)", "Username", "Client ID", "Peer ID",
             "Data Channel Cipher"),
    ]
    for c in clients:
        lines.append(_row(
            sep, "CLIENT_LIST", c.common_name, c.real_address, c.virtual_address, "",
            c.bytes_received, c.bytes_sent, _when(c.connected_since), int(c.connected_since),
            "UNDEF", c.client_id, "" if c.peer_id is None else c.peer_id, c.cipher,
        ))
    lines.append(_row(sep, "HEADER", "ROUTING_TABLE", "Virtual Address", "Common Name",
                      "Real Address", "Last Ref", "Last Ref (time_t)"))
    for c in clients:
        lines.append(_row(sep, "ROUTING_TABLE", c.virtual_address, c.common_name,
                          c.real_address, _when(c.last_ref), int(c.last_ref)))
    lines.append(_row(sep, "GLOBAL_STATS", "Max bcast/mcast queue length", 0))
    lines.append(_row(sep, "GLOBAL_STATS", "dco_enabled", 0))
    return [*lines, *(_our_rows(s, sep) if extras else []), "END"]


def _server_v1(s: StatusSnapshot, clients: list[ClientRow], extras: bool = True) -> list[str]:
    lines = [
        "OpenVPN CLIENT LIST",
        f"Updated,{_when(s.now)}",
        "Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since",
    ]
    for c in clients:
        lines.append(_row(",", c.common_name, c.real_address, c.bytes_received, c.bytes_sent,
                          _when(c.connected_since)))
    lines += ["ROUTING TABLE", "Virtual Address,Common Name,Real Address,Last Ref"]
    for c in clients:
        lines.append(_row(",", c.virtual_address, c.common_name, c.real_address,
                          _when(c.last_ref)))
    lines += ["GLOBAL STATS", "Max bcast/mcast queue length,0",
              *(_our_lines_v1(s) if extras else []), "END"]
    return lines


def _client(s: StatusSnapshot, extras: bool = True) -> list[str]:
    t = s.traffic
    return [
        "OpenVPN STATISTICS",
        f"Updated,{_when(s.now)}",
        f"TUN/TAP read bytes,{t.tun_rx}",
        f"TUN/TAP write bytes,{t.tun_tx}",
        f"TCP/UDP read bytes,{t.link_rx}",
        f"TCP/UDP write bytes,{t.link_tx}",
        "Auth read bytes,0",
        *(_our_lines_v1(s) if extras else []),
        "END",
    ]


def render_status(s: StatusSnapshot, version: int, *, extras: bool = True) -> str:
    """`extras=False`: stock's rows only (the management `status` command's answer)."""
    if s.clients is None:
        lines = _client(s, extras)
    elif version == 1:
        lines = _server_v1(s, s.clients, extras)
    else:
        lines = _server_v2(s, s.clients, "\t" if version == 3 else ",", extras)
    return "\n".join(lines) + "\n"


class StatusWriter:
    """Rewrites the status file so a reader never sees half of it.

    The file is opened at start, as root, so a path that cannot be written fails at once. Each
    update then goes to a temporary file renamed over the old one; if the directory refuses
    that (privileges dropped), the file is rewritten in place through the descriptor kept
    from the start, which is what OpenVPN always does.
    """

    def __init__(self, path: Path, log: logging.Logger) -> None:
        self.path = path
        self.log = log
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._atomic = True

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._atomic:
            try:
                self._replace(data)
                return
            except OSError as exc:
                self._atomic = False
                # Expected after `user`/`group` when the directory belongs to root.
                self.log.info(
                    "status file %s: cannot replace it atomically (%s); rewriting it in place",
                    self.path, exc.strerror,
                )
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.ftruncate(self._fd, 0)
            os.write(self._fd, data)
        except OSError as exc:
            self.log.error("status file %s: cannot write it: %s", self.path, exc.strerror)

    def _replace(self, data: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # The descriptor from the start now points at the replaced file; follow the new one
        # so an in-place fallback later writes the file readers see.
        with contextlib.suppress(OSError):
            new_fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            os.close(self._fd)
            self._fd = new_fd

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
