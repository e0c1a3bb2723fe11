"""What the tests of the supervisor-worker messages share (tests/app/test_worker_requests.py,
test_worker_messages.py): the supervisor's logger and a read of one message; the socket
pair and the `Supervisor` under test are fixtures in tests/app/conftest.py."""

from __future__ import annotations

import logging
import socket

from tunnel.app.worker_ipc import decode

LOG = logging.getLogger("test-worker-requests")


def read(sock: socket.socket) -> dict[str, object]:
    """One message from `sock`, within 2 s."""
    sock.settimeout(2.0)
    return decode(sock.recv(1 << 16))
