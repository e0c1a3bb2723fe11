"""The `tunnel` command line: demo, pki, genkey, server, client.

Bad input (flags, files) ends with one clear line on stderr and a non-zero exit code, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tunnel import __version__
from tunnel.protocol.aead import BACKEND as AEAD_BACKEND
from tunnel.protocol.aead import BACKEND_ERROR as AEAD_BACKEND_ERROR

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _build_parser() -> argparse.ArgumentParser:
    from tunnel.protocol.datacipher import DEFAULT_DATA_CIPHERS  # here: `tunnel` starts light

    parser = argparse.ArgumentParser(
        prog="tunnel", description="An asyncio UDP tunnel that speaks OpenVPN 2.6's wire protocol."
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} (data-channel AEAD: {AEAD_BACKEND})")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="two peers in one process on 127.0.0.1 (no root needed)")
    demo.add_argument(
        "--packets", type=_positive_int, default=100_000, help="packets each way (default 100000)"
    )
    demo.add_argument(
        "--size",
        type=_positive_int,
        default=1400,
        help="IPv4 packet size in bytes, 28..1500 (default 1400)",
    )
    demo.add_argument(
        "--cipher",
        default=DEFAULT_DATA_CIPHERS[0],
        choices=DEFAULT_DATA_CIPHERS,
    )
    demo.add_argument("--quiet", action="store_true", help="no live progress line")

    pki = sub.add_parser("pki", help="create a CA, a server and client certificates")
    pki.add_argument("directory", type=Path)
    pki.add_argument("--server-cn", default="server")
    pki.add_argument(
        "--client",
        action="append",
        dest="clients",
        metavar="CN",
        help="a client certificate to issue (repeatable; default: client)",
    )
    pki.add_argument("--days", type=_positive_int, default=3650)
    pki.add_argument("--overwrite", action="store_true")
    pki.add_argument("--tls-crypt", action="store_true",
                     help="also write tc.key, a static key for 'tls-crypt tc.key' on both sides")

    from tunnel.genkey import KINDS

    genkey = sub.add_parser("genkey", help="write a key file as 'openvpn --genkey' does",
                            description="write a key file as 'openvpn --genkey' does")
    genkey.add_argument("kind", choices=KINDS)
    genkey.add_argument("file", help="the file to create ('-': standard output)")
    genkey.add_argument("--server-key", type=Path, metavar="SERVERKEY",
                        help="tls-crypt-v2-client: the tls-crypt-v2 server key to wrap it for")
    genkey.add_argument("--metadata", metavar="BASE64",
                        help="tls-crypt-v2-client: user metadata, base64 (default: a timestamp)")

    for role, what in (
        ("server", "run a server from an OpenVPN server config file"),
        ("client", "run a client from an OpenVPN client config file"),
    ):
        run = sub.add_parser(role, help=what, description=what)
        run.add_argument(
            "--config", required=True, metavar="FILE", help="the OpenVPN config file"
        )
        run.add_argument(
            "--metrics-listen", type=_listen_address, metavar="ADDR:PORT",
            help="serve Prometheus metrics at http://ADDR:PORT/metrics",
        )
        if role == "server":
            run.add_argument(
                "--workers", type=_positive_int, metavar="N",
                help="worker processes sharing the port and the TUN device (default: one per "
                     "core where the config allows it, else 1; see docs/WORKERS.md)",
            )
    return parser


def _listen_address(text: str) -> tuple[str, int]:
    from tunnel.config.diagnostics import OptionProblem
    from tunnel.config.options_mgmt import parse_listen

    try:
        return parse_listen(text)
    except OptionProblem as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("option 'metrics-listen' ", "")) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if AEAD_BACKEND_ERROR is not None:  # an environment we cannot honour: refuse, run nothing
        print(f"tunnel {args.command}: error: {AEAD_BACKEND_ERROR}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "pki":
            return _pki(args)
        if args.command == "genkey":
            return _genkey(args)
        if args.command in ("server", "client"):
            return _run_tunnel(args)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"tunnel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_USAGE


def _demo(args: argparse.Namespace) -> int:
    from tunnel.demo import format_result, run_demo
    from tunnel.io.loop import new_event_loop

    # The live line only on a terminal: redirected output stays a clean log of whole lines.
    print(
        f"tunnel demo: TLS handshake on 127.0.0.1, then {args.packets} packets of {args.size} "
        f"bytes each way through the tunnel ...",
        file=sys.stderr,
        flush=True,
    )
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(
            run_demo(
                packets=args.packets,
                size=args.size,
                cipher=args.cipher,
                progress=not args.quiet and sys.stderr.isatty(),
            )
        )
    finally:
        loop.close()
    print(format_result(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _run_tunnel(args: argparse.Namespace) -> int:
    import logging

    from tunnel.app import StartupError, run_tunnel
    from tunnel.app.logsetup import LOGGER_NAME

    try:
        return run_tunnel(args.config, args.command, args.metrics_listen,
                          getattr(args, "workers", None))
    except StartupError as exc:
        print(f"tunnel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        # A bug, not bad input: the traceback goes to the log, one line to the user.
        logging.getLogger(LOGGER_NAME).exception("internal error")
        print(
            f"tunnel {args.command}: internal error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _pki(args: argparse.Namespace) -> int:
    from tunnel.pki import generate_pki

    paths = generate_pki(
        args.directory,
        server_cn=args.server_cn,
        client_cns=args.clients or ["client"],
        days=args.days,
        overwrite=args.overwrite,
        tls_crypt=args.tls_crypt,
    )
    print(f"CA certificate      {paths.ca_cert}")
    print(f"server certificate  {paths.server_cert} (key {paths.server_key})")
    for cn, (cert, key) in paths.clients.items():
        print(f"client {cn:<12} {cert} (key {key})")
    if paths.tls_crypt_key is not None:
        print(f"tls-crypt key       {paths.tls_crypt_key} ('tls-crypt tc.key' on both sides)")
    return EXIT_OK


def _genkey(args: argparse.Namespace) -> int:
    from tunnel.genkey import genkey

    where = genkey(args.kind, args.file, server_key=args.server_key, metadata=args.metadata)
    if where != "standard output":
        print(f"{args.kind} key written to {where}", file=sys.stderr)
    return EXIT_OK
