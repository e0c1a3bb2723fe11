"""The management interface on loopback with a stand-in for the tunnel (`Host`: a small object
answering what the interface asks of a tunnel), for tests/integration/test_management_*.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tunnel.app.management import AuthDecision, ByteCount, Management
from tunnel.config.mgmt_model import ManagementOptions

__all__ = ["Host", "connect", "line", "start"]


class Host:
    role = "client"

    def __init__(self) -> None:
        self.signals: list[int] = []

    def status_text(self, version: int) -> str:
        return "OpenVPN STATISTICS\nUpdated,2026-01-01 00:00:00\nEND\n"

    def load_stats(self) -> tuple[int, int, int]:
        return 0, 10, 20

    def bytecounts(self) -> list[ByteCount]:
        return [ByteCount(None, 10, 20)]

    def kill_by_common_name(self, name: str) -> int:
        return 0

    def kill_by_address(self, ip: str, port: int) -> int:
        return 0

    def client_kill(self, client_id: int, message: str) -> bool:
        return False

    def client_auth(self, decision: AuthDecision) -> bool:
        return False

    def throw_signal(self, signum: int) -> None:
        self.signals.append(signum)


async def start(tmp_path: Path, **options: object) -> Management:
    opts = ManagementOptions(host="127.0.0.1", port=0, **options)  # type: ignore[arg-type]
    m = Management(opts, logging.getLogger("tunnel"), "test")
    await m.open()
    m.host = Host()
    return m


async def connect(m: Management) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert m.address is not None
    return await asyncio.open_connection(*m.address)


async def line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
