"""The management socket under hostile clients: nothing they send stops the interface.

Real sockets on 127.0.0.1 and the real Management (with the stand-in host of mgmt_stub.py:
its `signal` only records). Every command of the table with random arguments, random bytes,
lines cut across writes, over-long lines, binary, NULs, a client-auth block never ended,
clients that never read, clients that vanish mid-line or with a reset, more clients than
MAX_CLIENTS. Bounded: a fixed seed, a fixed number of lines, every wait with a timeout.
Afterwards no internal error was logged, no exception reached the event loop, every
connection is gone, and a new client is served as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mgmt_stub import Host, connect, line, start
from tunnel.app import logsetup
from tunnel.app.management import Management
from tunnel.app.management.commands import COMMANDS
from tunnel.app.management.connection import MAX_LINE
from tunnel.app.management.server import MAX_CLIENTS

SEED = int(os.environ.get("FUZZ_SEED", "9"))
ARGUMENTS = [
    "", "all", "on", "off", "0", "1", "-1", "3", "18446744073709551616", "SIGTERM", "SIGHUP",
    "SIGUSR1", "SIGUSR2", "SIGKILL", "END", "Auth", "127.0.0.1:1194", "tcp:1.2.3.4:5",
    '"', '""', '"a b"', "\\", "\\\\\\", "\x00", "\t", "é", "\ufffd", "x" * 300,
]


def hostile_lines(rng: random.Random) -> list[bytes]:
    """Every command with random arguments, then garbage; each without its newline."""
    lines: list[bytes] = []
    for name in COMMANDS:
        lines.append(name.encode())
        for _ in range(8):
            words = [name, *(rng.choice(ARGUMENTS) for _ in range(rng.randrange(0, 5)))]
            lines.append(" ".join(words).encode())
    lines += [b'echo "unterminated', b'log "a\\', b"\r\r\r", b"\t \t", b"\x00" * 50,
              b"x" * (MAX_LINE + 1), b"client-auth 1 2", b"a config line", b"client-auth-nt"]
    lines += [rng.randbytes(rng.randrange(0, 300)).replace(b"\n", b"") for _ in range(300)]
    rng.shuffle(lines)
    # `exit`/`quit` end a connection: each fuzzing connection sends one last (see below).
    return [ln for ln in lines if ln.split(b" ", 1)[0].strip() not in (b"exit", b"quit")]


def chunks(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """`data` cut at random places: lines arrive split across reads."""
    at = 0
    while at < len(data):
        size = rng.choice((1, 2, 7, 100, 1000, 5000))
        yield data[at:at + size]
        at += size


async def drain(reader: asyncio.StreamReader) -> bytes:
    """Read until the server closes: a client that reads is never dropped for its backlog."""
    out = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            out += chunk
    return bytes(out)


async def fuzz_one_connection(m: Management, rng: random.Random, lines: list[bytes]) -> bytes:
    """Send the lines (then `quit`, which makes the server close); everything it answered."""
    reader, writer = await connect(m)
    reading = asyncio.ensure_future(drain(reader))
    try:
        for piece in chunks(rng, b"\n".join([*lines, b"END", b"quit"]) + b"\n"):
            assert not reading.done(), "the server closed a client that follows the rules"
            writer.write(piece)
            await writer.drain()
        return await asyncio.wait_for(reading, 30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def raw_socket(m: Management) -> socket.socket:
    assert m.address is not None
    sock = socket.create_connection(m.address, timeout=5)
    return sock


async def abusive_clients(m: Management, rng: random.Random) -> None:
    """The clients that do not follow the protocol at all."""
    socks: list[socket.socket] = []
    try:
        # More than MAX_CLIENTS at once: the extra ones are told so and closed.
        socks = [raw_socket(m) for _ in range(MAX_CLIENTS + 4)]
        await asyncio.sleep(0.2)
        for sock in socks:
            sock.sendall(b"x" * (MAX_LINE * 3))  # a line that never ends
        await asyncio.sleep(0.1)
        for i, sock in enumerate(socks):
            if i % 2:  # a reset instead of a close, mid-line
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        socks = []
        # Half a line then gone; a connection that sends nothing and goes.
        for data in (b"stat", b"", rng.randbytes(1000), b"client-auth 7 1\nline\n"):
            sock = raw_socket(m)
            if data:
                sock.sendall(data)
            sock.close()
        await asyncio.sleep(0.2)
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture
def log_levels() -> Iterator[None]:
    """`verb N` / `mute N` from the fuzz change the process's log settings: restore them."""
    verb, mute = logsetup.get_verb(), logsetup.get_mute()
    yield
    logsetup.set_verb(verb)
    logsetup.set_mute(mute)


@pytest.mark.timeout(120)
async def test_hostile_management_clients_stop_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, log_levels: None
) -> None:
    rng = random.Random(SEED)
    loop = asyncio.get_running_loop()
    escaped: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    caplog.set_level(logging.WARNING, logger="tunnel")
    m = await start(tmp_path, log_cache=50)
    try:
        assert isinstance(m.host, Host)
        lines = hostile_lines(rng)
        replies = 0
        for part in range(4):
            answer = await asyncio.wait_for(fuzz_one_connection(m, rng, lines[part::4]), 60)
            replies += answer.count(b"\r\nSUCCESS:") + answer.count(b"\r\nERROR:")
        # Most lines get an answer (a client-auth block swallows lines up to its END).
        assert replies > len(lines) // 2, (replies, len(lines))
        await abusive_clients(m, rng)
        # Every connection is gone (closed by us, by `exit`, by the bounds) ...
        for _ in range(50):
            if not m.connections:
                break
            await asyncio.sleep(0.05)
        assert not m.connections, m.connections
        # ... and a new client is served as before.
        reader, writer = await connect(m)
        assert (await line(reader)).startswith(b">INFO:OpenVPN Management Interface")
        writer.write(b"pid\n")
        assert (await line(reader)).startswith(b"SUCCESS: pid=")
        writer.write(b"load-stats\n")
        assert await line(reader) == b"SUCCESS: nclients=0,bytesin=10,bytesout=20\r\n"
        writer.close()
    finally:
        await m.close()
        loop.set_exception_handler(None)
    assert not escaped, escaped
    internal = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert not internal, internal
    assert all(r.exc_info is None for r in caplog.records), [r.getMessage()
                                                             for r in caplog.records]
