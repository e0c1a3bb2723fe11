"""Messages between the supervisor and its workers longer than one packet (no root): a
worker's status answer grows ~440 bytes per client, and one SOCK_SEQPACKET packet is at most
the socket's send buffer (208 KB by default), so a worker with ~500 clients could not send
its status at all (EMSGSIZE). `send_message` sends such a message in chunks and
`MessageReader` puts it together; a message cut short is dropped, not glued to the next.
Real socket pairs with their default buffers, and the real `Supervisor.ask`."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.app.worker_sockets import read
from tunnel.app.worker_ipc import MessageReader, encode, send_message
from tunnel.app.workers import Supervisor


def status_of(clients: int) -> dict[str, object]:
    """A status answer's size and shape: one row per client (as snapshot_to_json's)."""
    return {"id": 1, "clients": [
        {"common_name": f"client-{n:06d}", "real_address": f"10.99.{n >> 8 & 255}.{n & 255}:4"
         "0123", "virtual_address": f"10.80.{n >> 8 & 255}.{n & 255}", "bytes_received": n,
         "bytes_sent": 2 * n, "connected_since": 1764633600.5, "client_id": n, "peer_id": n,
         "cipher": "AES-256-GCM", "last_ref": 1764633700.25} for n in range(clients)]}


def test_a_status_of_thousands_of_clients_goes_in_chunks(
        pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    message = status_of(5000)
    assert len(encode(message)) > 1_000_000
    with pytest.raises(OSError, match="too long"):
        sender.send(encode(message))  # one packet: what the workers did before
    threading.Thread(target=send_message, args=(sender, message)).start()
    receiver.settimeout(5.0)
    reader = MessageReader(receiver)
    got = None
    reads = 0
    while got is None:
        got = reader.read()
        reads += 1
    assert got == message and reads > 16


def test_a_message_cut_short_is_dropped_and_the_next_one_read(
        pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    receiver.settimeout(5.0)
    reader = MessageReader(receiver)
    sender.send(b"\x01" + encode(status_of(200))[:60000])  # a first chunk, then nothing more
    sender.send(encode({"id": 2, "killed": 1}))
    assert reader.read() is None
    assert reader.read() == {"id": 2, "killed": 1}
    sender.send(b"\x03}")  # the rest of the dropped one: no start to join it to
    with pytest.raises(ValueError, match="without the start"):
        reader.read()
    sender.send(encode({"id": 3, "killed": 0}))
    assert reader.read() == {"id": 3, "killed": 0}
    sender.close()
    with pytest.raises(EOFError):
        reader.read()


def test_the_supervisors_ask_gets_a_long_status_whole(
        supervisor: Supervisor, pair: tuple[socket.socket, socket.socket]) -> None:
    worker_end, supervisor_end = pair  # the control pair: the supervisor asks
    supervisor_end.setblocking(False)
    worker = supervisor.workers[0]
    worker.control, worker.ready = supervisor_end, True
    status = status_of(3000)

    def answer() -> None:  # the worker, as its _answer does: chunks as the reader makes room
        asked = read(worker_end)
        send_message(worker_end, {**status, "id": asked["id"]})

    threading.Thread(target=answer).start()
    answers = supervisor.ask({"op": "status"}, timeout=5.0)
    assert [(index, got["clients"]) for index, got in answers] == [(0, status["clients"])]
