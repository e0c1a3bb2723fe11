"""RFC 5705 keying material exporter (`SSL_export_keying_material`) for a stdlib TLS session.

Python's `ssl` module does not expose the exporter, which 2.6 uses for dynamic tls-crypt
(`tls_crypt.c: tls_session_generate_dynamic_tls_crypt_key()`). OpenSSL has it; we reach the
`SSL *` of an `ssl.SSLObject` through ctypes. The pointer sits right after the object header
and the socket weakref in CPython's `PySSLSocket` (Modules/_ssl.c, unchanged since 3.7); a
wrong guess would be dangerous, so `available()` checks it against what the object reports
(protocol version and role through OpenSSL's own accessors) before anything is exported, and
every caller treats "not available" as "do not announce the feature".
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from functools import cache

__all__ = ["export_keying_material", "supported"]

_PTR = ctypes.sizeof(ctypes.c_void_p)
# PyObject_HEAD (refcount + type) + PyObject *Socket: where `SSL *ssl` is in PySSLSocket.
_SSL_OFFSET = 2 * _PTR + _PTR


@cache
def _libssl() -> ctypes.CDLL | None:
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # dlsym searches _ssl's own libssl
        lib.SSL_export_keying_material.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
        ]
        lib.SSL_export_keying_material.restype = ctypes.c_int
        lib.SSL_get_version.argtypes = [ctypes.c_void_p]
        lib.SSL_get_version.restype = ctypes.c_char_p
        lib.SSL_is_server.argtypes = [ctypes.c_void_p]
        lib.SSL_is_server.restype = ctypes.c_int
        return lib
    except (ImportError, OSError, AttributeError):
        return None


def supported() -> bool:
    """Whether sessions here can export keying material (checked again at each export)."""
    return sys.implementation.name == "cpython" and _libssl() is not None


def _ssl_pointer(obj: ssl.SSLObject) -> int | None:
    if sys.implementation.name != "cpython":
        return None
    inner = getattr(obj, "_sslobj", None)
    if inner is None or type(inner).__name__ != "_SSLSocket":
        return None
    pointer = ctypes.c_void_p.from_address(id(inner) + _SSL_OFFSET).value
    return pointer or None


def export_keying_material(obj: ssl.SSLObject, label: bytes, length: int) -> bytes | None:
    """`length` bytes for `label` (no context) from a completed session; None if the exporter
    cannot be reached safely or OpenSSL refuses."""
    lib = _libssl()
    version = obj.version()
    if lib is None or version is None:
        return None
    pointer = _ssl_pointer(obj)
    if pointer is None:
        return None
    # The pointer must describe this very session before we hand it to OpenSSL for writing.
    if lib.SSL_get_version(pointer) != version.encode() or bool(
        lib.SSL_is_server(pointer)) != obj.server_side:
        return None
    out = ctypes.create_string_buffer(length)
    if lib.SSL_export_keying_material(pointer, out, length, label, len(label), None, 0, 0) != 1:
        return None
    return out.raw
