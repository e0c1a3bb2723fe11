"""The management interface's histories: log lines, state changes, echo messages.

Each is a bounded ring (stock keeps 100 entries by default; `management-log-cache N` sizes
the log's) printed in stock's `log_entry_print` layout:

    log:    1796115647,I,message                (flags I, W, N, F or D)
    state:  1796115646,CONNECTED,SUCCESS,10.8.0.1,REMOTE_IP,REMOTE_PORT,LOCAL_IP,LOCAL_PORT
    echo:   1796115647,text

An undefined address prints as an empty ip and port, so a state line always has 8 fields.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

__all__ = ["History", "LogEntry", "StateEntry", "log_flag"]

Address = tuple[str, int]


def log_flag(levelno: int) -> str:
    """Stock's msg_flags_string: F fatal, N non-fatal error, W warning, I info, D debug."""
    if levelno >= logging.CRITICAL:
        return "F"
    if levelno >= logging.ERROR:
        return "N"
    if levelno >= logging.WARNING:
        return "W"
    if levelno >= logging.INFO:
        return "I"
    return "D"


@dataclass(frozen=True, slots=True)
class LogEntry:
    timestamp: int
    flags: str
    text: str

    def line(self) -> str:
        return f"{self.timestamp},{self.flags},{self.text}"


def _address(address: Address | None) -> str:
    return "," if address is None else f"{address[0]},{address[1]}"


@dataclass(frozen=True, slots=True)
class StateEntry:
    timestamp: int
    state: str  # CONNECTING, WAIT, AUTH, GET_CONFIG, ASSIGN_IP, ADD_ROUTES, CONNECTED, ...
    description: str = ""
    local_ip: str = ""
    remote: Address | None = None
    local: Address | None = None
    local_ip6: str = ""

    def line(self) -> str:
        text = (f"{self.timestamp},{self.state},{self.description},{self.local_ip},"
                f"{_address(self.remote)},{_address(self.local)}")
        return f"{text},{self.local_ip6}" if self.local_ip6 else text


@dataclass(frozen=True, slots=True)
class EchoEntry:
    timestamp: int
    text: str

    def line(self) -> str:
        return f"{self.timestamp},{self.text}"


class History:
    """The last `size` entries, oldest first."""

    def __init__(self, size: int) -> None:
        self.entries: deque[LogEntry | StateEntry | EchoEntry] = deque(maxlen=size)

    def add(self, entry: LogEntry | StateEntry | EchoEntry) -> None:
        self.entries.append(entry)

    def last(self, n: int | None) -> list[str]:
        """The last n lines (all with None), oldest first, as `log N` prints them."""
        items = list(self.entries)
        if n is not None:
            items = items[-n:] if n > 0 else []
        return [entry.line() for entry in items]

    @property
    def latest(self) -> LogEntry | StateEntry | EchoEntry | None:
        return self.entries[-1] if self.entries else None
