"""`management-query-passwords`: credentials asked of the management client.

The tunnel asks with `query(type, username=True)` (an awaitable); the client is sent
">PASSWORD:Need 'Auth' username/password" and answers `username "Auth" u` and
`password "Auth" p`, answered in stock's words ("SUCCESS: 'Auth' password entered, but not
yet verified"). Nothing entered is ever logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tunnel.app.management.connection import Connection

__all__ = ["Broadcaster", "Credentials", "PasswordQueries"]


class Broadcaster(Protocol):
    """What the queries need of the management interface: to tell every client."""

    def broadcast(self, *lines: str) -> None: ...


@dataclass(slots=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(slots=True)
class _Query:
    type: str
    want_username: bool
    answer: Credentials
    done: asyncio.Future[Credentials]


class PasswordQueries:
    def __init__(self, management: Broadcaster) -> None:
        self.management = management
        self._query: _Query | None = None

    def prompt(self) -> str | None:
        q = self._query
        if q is None:
            return None
        what = "username/password" if q.want_username else "password"
        return f">PASSWORD:Need '{q.type}' {what}"

    async def query(self, kind: str, *, username: bool = True) -> Credentials:
        """Ask the management client(s); returns once both (or the password) arrived."""
        loop = asyncio.get_running_loop()
        q = _Query(kind, username, Credentials(), loop.create_future())
        self._query = q
        prompt = self.prompt()
        assert prompt is not None
        self.management.broadcast(prompt)
        try:
            return await q.done
        finally:
            if self._query is q:
                self._query = None

    def enter(self, c: Connection, what: str, kind: str, value: str) -> None:
        q = self._query
        needed = q is not None and (what == "password" or q.want_username)
        if q is None or not needed:
            c.send(f"ERROR: no {what} is currently needed at this time")
            return
        if kind != q.type:
            c.send(f"ERROR: {what} of type '{kind}' entered, but we need one of type "
                   f"'{q.type}'")
            return
        if what == "username":
            q.answer.username = value
        else:
            q.answer.password = value
        c.send(f"SUCCESS: '{kind}' {what} entered, but not yet verified")
        complete = q.answer.password and (q.answer.username or not q.want_username)
        if complete and not q.done.done():
            q.done.set_result(q.answer)

    def failed(self, kind: str, reason: str | None = None) -> None:
        """Stock's >PASSWORD:Verification Failed: 'Auth' ['reason']."""
        suffix = f" ['{reason}']" if reason else ""
        self.management.broadcast(f">PASSWORD:Verification Failed: '{kind}'{suffix}")

    def forget(self) -> None:
        q = self._query
        if q is not None:
            q.answer = Credentials()
