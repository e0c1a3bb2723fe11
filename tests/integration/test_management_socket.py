"""The management socket on loopback, with a stand-in for the tunnel: password, bounds, clients.

Real sockets on 127.0.0.1 and a real event loop; the host is a small object answering the
questions the interface asks of a tunnel (what the e2e tests ask of the real one).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from tests.integration.mgmt_stub import Host, connect, line, start
from tunnel.app.management import Management
from tunnel.app.management.connection import MAX_LINE, MAX_PENDING
from tunnel.config.mgmt_model import ManagementOptions


async def test_password_as_stock(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\nignored second line\n")
    m = await start(tmp_path, password_file=pw)
    try:
        reader, writer = await connect(m)
        assert await asyncio.wait_for(reader.readexactly(15), 5) == b"ENTER PASSWORD:"
        writer.write(b"wrong\n")
        assert await line(reader) == b"ERROR: bad password\r\n"
        assert await asyncio.wait_for(reader.readexactly(15), 5) == b"ENTER PASSWORD:"
        writer.write(b"s3cret\r\n")
        assert await line(reader) == b"SUCCESS: password is correct\r\n"
        assert (await line(reader)).startswith(b">INFO:OpenVPN Management Interface Version 5")
        writer.write(b"pid\n")
        assert (await line(reader)).startswith(b"SUCCESS: pid=")
        # three wrong passwords close the connection
        r2, w2 = await connect(m)
        for _ in range(3):
            w2.write(b"nope\n")
        data = await asyncio.wait_for(r2.read(), 5)
        assert data.count(b"ERROR: bad password") == 3
        writer.close()
        w2.close()
    finally:
        await m.close()


async def test_bad_input_is_bounded_and_answered(tmp_path: Path) -> None:
    m = await start(tmp_path)
    try:
        reader, writer = await connect(m)
        await line(reader)  # >INFO
        writer.write(b"x" * (MAX_LINE * 4) + b"\n")  # a long line: one error, dropped whole
        assert await line(reader) == b"ERROR: command line too long\r\n"
        writer.write(bytes(b for b in range(256) if b != 10) * 4 + b"\n")  # binary garbage
        assert (await line(reader)).startswith(b"ERROR:")
        writer.write(b"\xff\xfe\x00status\n")
        assert (await line(reader)).startswith(b"ERROR: unknown command")
        writer.write(b"load-stats\n")  # still served
        assert await line(reader) == b"SUCCESS: nclients=0,bytesin=10,bytesout=20\r\n"
        writer.close()
    finally:
        await m.close()


async def test_a_client_that_never_reads_is_dropped(tmp_path: Path) -> None:
    m = await start(tmp_path, log_cache=10)
    try:
        assert m.address is not None
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        stuck.connect(m.address)
        stuck.sendall(b"log on\n")
        other_reader, other = await connect(m)  # several clients at once, as a GUI + a script
        await line(other_reader)
        await asyncio.sleep(0.2)
        # Flood the real-time log it asked for and never reads: cut off, bounded.
        log = logging.getLogger("tunnel.flood")
        log.propagate = False
        log.addHandler(m._bridge)
        text = "y" * 8000
        for _ in range(8 * MAX_PENDING // 8000):
            log.warning("%s", text)
            if len(m.connections) == 1:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        log.removeHandler(m._bridge)
        assert len(m.connections) == 1  # the stuck one went; the reader stays
        other.write(b"pid\n")
        assert (await line(other_reader)).startswith(b"SUCCESS: pid=")
        stuck.close()
        other.close()
    finally:
        await m.close()


async def test_hold_waits_for_release(tmp_path: Path) -> None:
    m = await start(tmp_path, hold=True)
    try:
        held = asyncio.ensure_future(m.hold())
        reader, writer = await connect(m)
        assert (await line(reader)).startswith(b">INFO:")
        assert await line(reader) == b">HOLD:Waiting for hold release:0\r\n"
        await asyncio.sleep(0.2)
        assert not held.done()
        writer.write(b"hold\nhold release\n")
        assert await line(reader) == b"SUCCESS: hold=1\r\n"
        assert await line(reader) == b"SUCCESS: hold release succeeded\r\n"
        await asyncio.wait_for(held, 5)
        writer.close()
    finally:
        await m.close()


@pytest.mark.parametrize("text", ["127.0.0.1:9100", "[::1]:9100"])
def test_metrics_listen_parses(text: str) -> None:
    from tunnel.config.options_mgmt import parse_listen

    assert parse_listen(text)[1] == 9100


@pytest.mark.parametrize("text", ["9100", "localhost:9100", "127.0.0.1:0", "1.2.3.4:99999"])
def test_metrics_listen_refuses(text: str) -> None:
    from tunnel.config.diagnostics import OptionProblem
    from tunnel.config.options_mgmt import parse_listen

    with pytest.raises(OptionProblem, match="metrics-listen"):
        parse_listen(text)


def test_cli_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tunnel", "server", "--config", str(tmp_path / "x.conf"),
         "--metrics-listen", "localhost:9100"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--metrics-listen" in result.stderr and "ADDR:PORT" in result.stderr


async def test_password_query_as_stock(tmp_path: Path) -> None:
    m = await start(tmp_path, query_passwords=True)
    try:
        reader, writer = await connect(m)
        await line(reader)  # >INFO
        writer.write(b"password Auth x\n")
        assert await line(reader) == b"ERROR: no password is currently needed at this time\r\n"
        asked = asyncio.ensure_future(m.passwords.query("Auth"))
        assert await line(reader) == b">PASSWORD:Need 'Auth' username/password\r\n"
        writer.write(b'username "Private Key" bob\n')
        assert await line(reader) == (b"ERROR: username of type 'Private Key' entered, but we "
                                      b"need one of type 'Auth'\r\n")
        writer.write(b'username "Auth" bob\npassword "Auth" "s e\\"cret"\n')
        assert await line(reader) == (b"SUCCESS: 'Auth' username entered, but not yet "
                                      b"verified\r\n")
        assert await line(reader) == (b"SUCCESS: 'Auth' password entered, but not yet "
                                      b"verified\r\n")
        creds = await asyncio.wait_for(asked, 5)
        assert (creds.username, creds.password) == ("bob", 's e"cret')
        m.passwords.failed("Auth", "bad")
        assert await line(reader) == b">PASSWORD:Verification Failed: 'Auth' ['bad']\r\n"
        writer.close()
    finally:
        await m.close()


async def test_unix_socket_checks_the_peer_user(tmp_path: Path) -> None:
    import os
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    other = next(p.pw_name for p in pwd.getpwall() if p.pw_uid != os.getuid())
    for user, allowed in ((me, True), (other, False)):
        path = tmp_path / f"{user}.sock"
        opts = ManagementOptions(unix_path=path, client_user=user)
        m = Management(opts, logging.getLogger("tunnel"), "test")
        await m.open()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            data = await asyncio.wait_for(reader.read(200), 5)
            assert data.startswith(b">INFO:") == allowed, (user, data)
            writer.close()
        finally:
            await m.close()
        assert not path.exists()  # removed at close, as stock does


async def test_log_cache_signal_and_forget_on_disconnect(tmp_path: Path) -> None:
    import signal

    m = await start(tmp_path, log_cache=3, signal=True, forget_disconnect=True,
                    query_passwords=True)
    host = m.host
    assert isinstance(host, Host)
    try:
        reader, writer = await connect(m)
        await line(reader)
        for i in range(10):
            logging.getLogger("tunnel").warning("line %d", i)
        writer.write(b"log all\n")
        got = [await line(reader) for _ in range(4)]
        assert got[-1] == b"END\r\n" and all(b",W," in x or b",D," in x for x in got[:3])
        asked = asyncio.ensure_future(m.passwords.query("Auth"))
        await line(reader)  # >PASSWORD:Need
        writer.write(b"username Auth bob\n")
        await line(reader)
        writer.close()
        await asyncio.sleep(0.3)
        # management-signal: the client went away -> SIGUSR1; forget-disconnect: bob is gone
        assert host.signals == [signal.SIGUSR1]
        r2, w2 = await connect(m)
        await line(r2)
        assert await line(r2) == b">PASSWORD:Need 'Auth' username/password\r\n"
        w2.write(b"password Auth pw\n")
        await line(r2)
        await asyncio.sleep(0.1)
        assert not asked.done()  # the username has to be entered again
        asked.cancel()
        w2.close()
    finally:
        await m.close()
