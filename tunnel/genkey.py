"""`tunnel genkey`: the key files `openvpn --genkey` writes, in the same formats.

    tunnel genkey secret FILE                  (also: tls-auth, tls-crypt) 2048-bit static key
    tunnel genkey tls-crypt-v2-server FILE
    tunnel genkey tls-crypt-v2-client FILE --server-key SERVERKEY [--metadata BASE64]

A client key carries user metadata (type 0, given base64-encoded as to `openvpn`) or, without
`--metadata`, its creation time (type 1), which `tls-crypt-v2-max-age` checks. Files are made
mode 0600 and never overwritten; "-" writes to standard output.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
import time
from pathlib import Path

from tunnel.protocol.wrap.keyfile import KeyFileError, format_static_key, generate_static_key
from tunnel.protocol.wrap.v2keys import ServerKey, generate_client_key, unwrap_client_key

__all__ = ["KINDS", "GenkeyError", "genkey"]

KINDS = ("secret", "tls-auth", "tls-crypt", "tls-crypt-v2-server", "tls-crypt-v2-client")


class GenkeyError(ValueError):
    """Bad arguments or input files: one line for the user."""


def _read_server_key(path: Path) -> ServerKey:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GenkeyError(f"cannot read server key {path}: {exc}") from None
    try:
        return ServerKey.parse(text)
    except KeyFileError as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise GenkeyError(f"{where}: {exc.reason}") from None


def key_text(kind: str, *, server_key: Path | None = None, metadata: str | None = None,
             now: float | None = None) -> str:
    if kind in ("secret", "tls-auth", "tls-crypt"):
        return format_static_key(generate_static_key())
    if kind == "tls-crypt-v2-server":
        return ServerKey.generate().pem()
    if kind != "tls-crypt-v2-client":
        raise GenkeyError(f"unknown key type {kind!r} (one of {', '.join(KINDS)})")
    if server_key is None:
        raise GenkeyError("tls-crypt-v2-client needs --server-key SERVERKEY")
    server = _read_server_key(server_key)
    user: bytes | None = None
    if metadata is not None:
        try:
            user = base64.b64decode(metadata, validate=True)
        except (binascii.Error, ValueError):
            raise GenkeyError("--metadata must be base64 (as for openvpn --genkey)") from None
    try:
        client = generate_client_key(server, user_metadata=user,
                                     now=int(time.time() if now is None else now))
    except ValueError as exc:
        raise GenkeyError(str(exc)) from None
    # As stock: check the new key unwraps with the server key before handing it out.
    assert unwrap_client_key(server, client.wkc) is not None
    return client.pem()


def genkey(kind: str, target: str, *, server_key: Path | None = None,
           metadata: str | None = None) -> str:
    """Write a new key of `kind` to `target` ("-": stdout); returns what was written where."""
    text = key_text(kind, server_key=server_key, metadata=metadata)
    if target == "-":
        sys.stdout.write(text)
        return "standard output"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GenkeyError(f"refusing to overwrite existing file {target}") from None
    except OSError as exc:
        raise GenkeyError(f"cannot create {target}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return target
