"""What the management interface asks of the running tunnel (implemented by the Runtime).

A command the running role cannot do answers as stock does: "ERROR: The 'kill' command is not
supported by the current daemon mode" (a client has no `kill`; a server no `>BYTECOUNT:`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["AuthDecision", "ByteCount", "ManagementHost", "Unsupported"]


class Unsupported(Exception):
    """The running role has no such command; the interface answers stock's ERROR line."""


@dataclass(frozen=True, slots=True)
class ByteCount:
    client_id: int | None  # None: the client role's own totals (>BYTECOUNT:)
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class AuthDecision:
    client_id: int
    key_id: int
    approve: bool
    reason: str = ""  # client-deny: for the log
    client_reason: str | None = None  # client-deny: what the client is told
    config: tuple[str, ...] = ()  # client-auth: the lines up to END (per-client push)


class ManagementHost(Protocol):
    role: Literal["server", "client"]

    def status_text(self, version: int) -> str:
        """The status in stock's layout for `status N` (ending with END)."""
        ...

    def load_stats(self) -> tuple[int, int, int]:
        """(clients, link bytes in, link bytes out)."""
        ...

    def bytecounts(self) -> list[ByteCount]: ...

    def kill_by_common_name(self, name: str) -> int:
        """Clients disconnected (Unsupported on a client)."""
        ...

    def kill_by_address(self, ip: str, port: int) -> int: ...

    def client_kill(self, client_id: int, message: str) -> bool: ...

    def client_auth(self, decision: AuthDecision) -> bool:
        """False: no client/key waiting with those ids."""
        ...

    def throw_signal(self, signum: int) -> None: ...
