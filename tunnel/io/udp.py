"""The UDP link: a non-blocking socket sized for a tunnel, and a bounded-batch reader.

`DatagramProtocol` hands each datagram over as a fresh `bytes`; the tunnel instead reads with
`recvfrom_into` straight into pooled buffers and drains a bounded batch per readiness callback,
so a burst costs one callback and no packet allocation.
"""

from __future__ import annotations

import errno
import socket

# Big socket buffers absorb bursts while the single-threaded loop is busy with the other side.
_SOCKET_BUFFER = 4 * 1024 * 1024


def open_udp_socket(
    host: str, port: int, *, family: int = socket.AF_INET, reuse_port: bool = False
) -> socket.socket:
    """Bind a non-blocking UDP socket; a clear OSError message if the port is taken."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            _set_buffer(sock, option)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"UDP port {host}:{port} is already in use") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise OSError(
                    exc.errno, f"cannot bind {host}:{port}: no such local address"
                ) from None
            raise
    except BaseException:
        sock.close()
        raise
    return sock


def _set_buffer(sock: socket.socket, option: int) -> None:
    # As root the *FORCE variants lift the net.core.[rw]mem_max cap; otherwise take what we get.
    force = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32}[option]  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, _SOCKET_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
