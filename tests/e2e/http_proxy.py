"""A minimal HTTP CONNECT proxy with Basic auth, for tests/e2e/test_tcp_profiles.py.

Run inside a test namespace. It prints one line per request (`CONNECT target auth=ok|bad|none
agent=...`), answers 407 without valid credentials, otherwise connects to the target and
relays both ways. Bounded: it exits by itself after `--seconds`.

    python -m tests.e2e.http_proxy --listen 10.1.2.1 3128 --user u --password p --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  expected: str | None) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" "), "", ""][:3]
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    auth = headers.get("proxy-authorization", "")
    state = "none" if not auth else "ok" if auth == f"Basic {expected}" else "bad"
    print(f"{method} {target} auth={state} agent={headers.get('user-agent', '-')}", flush=True)
    if method != "CONNECT" or (expected is not None and state != "ok"):
        writer.write(b"HTTP/1.0 407 Proxy Authentication Required\r\n"
                     b"Proxy-Authenticate: Basic realm=\"test\"\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    host, _, port = target.rpartition(":")
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        writer.write(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
        writer.close()
        return
    writer.write(b"HTTP/1.0 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))


async def _main(args: argparse.Namespace) -> None:
    expected = None
    if args.user is not None:
        expected = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, expected), args.listen[0], int(args.listen[1]))
    print("listening", flush=True)
    async with server:
        await asyncio.sleep(args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", nargs=2, required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--seconds", type=float, default=60)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
