"""Fixtures of the supervisor-worker message tests: a SOCK_SEQPACKET socket pair, as between
the processes (its default buffers), and a real `Supervisor` of one worker with a pool of
one address."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.test_worker_count import server_conf
from tests.app.worker_sockets import LOG
from tunnel.app.workers import SharedPool, Supervisor
from tunnel.config import load_config
from tunnel.protocol.server import AddressPool


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    worker_end, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield worker_end, supervisor_end
    worker_end.close()
    supervisor_end.close()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(str(tmp_path / "server.conf"),
                     load_config(str(server_conf(tmp_path))), 1, LOG)
    one = AddressPool(ipaddress.IPv4Address("10.8.0.2"), ipaddress.IPv4Address("10.8.0.2"))
    sup.pool = SharedPool({4: one}, 100, True, None, LOG, lambda worker, cn: None)
    yield sup
