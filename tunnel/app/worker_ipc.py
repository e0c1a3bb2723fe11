"""The messages between the supervisor of a multi-worker server and its workers.

Two `SOCK_SEQPACKET` socket pairs per worker, one JSON object per packet (never pickle: a
worker parses network input and runs unprivileged, the supervisor may be root):

- *requests* (worker -> supervisor): `alloc`/`peek` (answered at once: the worker waits for
  the answer, a few microseconds, once per connecting client), `place` (a new session's
  cookie verified here: `sid`, `addr`, `data` the datagram in base64; answered with the
  `owner` it is pinned to, or null: dropped), `release`, `route`, `pin` (a placed session
  was made here (`add`) or not, or ended: the UDP steering's pinned map), `notify`
  (management notification lines to broadcast), `ready` (not answered); `alloc`, `peek` and
  `place` carry an `id` the answer echoes, and `cancel` (that `id`) follows one that timed
  out: its late answer is discarded and undone (SupervisorRequests);
- *control* (supervisor -> worker): `status` (answered with the worker's status snapshot on
  the same socket), `kill` (the management interface's kill / client-kill: by `cn`,
  `address` [ip, port] or `cid`; answered with how many sessions it ended), `kill_cn` (end
  this CN's session: a newer connection of it arrived on another worker, and duplicate-cn
  is off; not answered), `metrics` (answered with the worker's Prometheus exposition text),
  `handoff` (a proof another worker verified, placed here: `sid`, `addr`, `data`; the worker
  feeds it into its server, which verifies it again, and answers with `pin` on requests).
  Answers carry the request's `id`.

A message longer than one packet can be (a status of a few hundred clients is more than the
default socket send buffer, 208 KB: `send` fails with EMSGSIZE) goes as chunks of at most
`_CHUNK` bytes, each a packet of its own behind a mark byte (first, middle, last; a message
in one packet starts with "{"), and `MessageReader` puts it together again. Each socket has
one writer, so the chunks of one message are consecutive; a message cut short (a send that
timed out half way) is dropped at the next first chunk or whole message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import socket
import time
from typing import Any, Final, Generic, Protocol

from core import PoolStats
from tunnel.app.status import ArenaCounters, ClientRow, MemoryRow, StatusSnapshot
from tunnel.io.driver import DriverStats
from tunnel.protocol.addresspool import IP
from tunnel.protocol.traffic import Traffic

__all__ = ["ANSWER_TIMEOUT", "MAX_MESSAGE", "PACKET_MAX", "MessageReader", "NoAnswer",
           "RemotePool", "SupervisorRequests", "WorkerGroup", "decode", "encode",
           "merge_snapshots", "send_message", "snapshot_from_json", "snapshot_to_json"]

MAX_MESSAGE: Final = 1 << 26  # a whole message at most (a status of ~100k clients)
PACKET_MAX: Final = 1 << 16  # one packet at most: what a read asks for (a 4 MB read costs
# ~23 us more per message than this, measured: the buffer is allocated, then cut down)
_CHUNK: Final = 60000  # a long message's chunk (below any socket send buffer)
_FIRST, _MIDDLE, _LAST = b"\x01", b"\x02", b"\x03"
ANSWER_TIMEOUT = 5.0


class WorkerGroup(Protocol):
    """What the supervisor's management and metrics views need of it (`Supervisor` in
    tunnel/app/workers.py): how many workers, and asking all of them one control message."""

    count: int

    def ask(self, message: dict[str, Any], timeout: float = ...
            ) -> list[tuple[int, dict[str, Any]]]:
        """(worker index, answer) of every running worker that answered within `timeout`."""
        ...


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """`message` on `sock`: one packet, or chunks of a long one. Raises what `send` raises
    (a non-blocking socket that is full: BlockingIOError, maybe after some chunks)."""
    data = encode(message)
    if len(data) <= _CHUNK:
        sock.send(data)
        return
    view = memoryview(data)
    for at in range(0, len(data), _CHUNK):
        mark = _FIRST if not at else _LAST if at + _CHUNK >= len(data) else _MIDDLE
        sock.sendmsg([mark, view[at : at + _CHUNK]])


class MessageReader:
    """The messages of one socket, whole: `read()` returns the next, or None when it read a
    chunk of a longer one (more follow). It raises what `recv` raises (BlockingIOError,
    TimeoutError, OSError), EOFError when the peer closed the socket, and ValueError for a
    message that is not a JSON object, too long, or a chunk without its start."""

    __slots__ = ("_parts", "_size", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._parts: list[bytes] | None = None
        self._size = 0

    def read(self) -> dict[str, Any] | None:
        data = self.sock.recv(PACKET_MAX)
        if not data:
            raise EOFError("the peer closed the socket")
        mark = data[:1]
        if mark == _FIRST:
            self._parts, self._size = [data[1:]], len(data) - 1
            return None
        if mark in (_MIDDLE, _LAST):
            parts = self._parts
            if parts is None:
                raise ValueError("a chunk without the start of its message")
            parts.append(data[1:])
            self._size += len(data) - 1
            if self._size > MAX_MESSAGE:
                self._parts = None
                raise ValueError(f"a message longer than {MAX_MESSAGE} bytes")
            if mark == _MIDDLE:
                return None
            data = b"".join(parts)
        self._parts = None
        return decode(data)


class NoAnswer(RuntimeError):
    """The supervisor did not answer a request in time (or its socket failed)."""


class SupervisorRequests:
    """A worker's end of its *requests* socket: requests answered or not, each answer matched
    to its request.

    A request that is answered carries an `id` (a counter), which the supervisor echoes in
    its answer. An answer with another id is that of a request that timed out, arriving late:
    discarded, within the one deadline. A request that timed out is cancelled (`cancel`, its
    id) on the same socket, after it: the supervisor handles a worker's requests in order, so
    it has answered the request when it reads the cancel, and undoes what the answer gave
    (an `alloc`'s address goes back to the pool, a `place`'s new pin on this worker goes).
    So nothing a discarded answer carried stays taken, even if this worker asks nothing
    more for a long time, and the worker keeps no record of its timed-out requests.
    """

    def __init__(self, sock: socket.socket, timeout: float = ANSWER_TIMEOUT) -> None:
        self.sock = sock
        self.timeout = timeout
        self._last_id = 0
        self._answers = MessageReader(sock)

    def send(self, message: dict[str, Any]) -> None:
        """A request that is not answered (`release`, `pin`, `route`, `notify`, `ready`)."""
        send_message(self.sock, message)

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send `message` and wait for its answer (NoAnswer: none within the timeout)."""
        self._last_id += 1
        request = self._last_id
        deadline = time.monotonic() + self.timeout
        self.sock.settimeout(self.timeout)
        try:
            send_message(self.sock, {**message, "id": request})
        except OSError as exc:
            raise NoAnswer(f"the supervisor did not answer {message.get('op')}: {exc}") \
                from None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                self.sock.settimeout(left)
                answer = self._answers.read()
                if answer is not None and answer.get("id") == request:
                    return answer
                # A chunk of a longer answer (more follow), or a timed-out request's answer:
                # it was cancelled, the supervisor undid it.
        except (OSError, EOFError, ValueError) as exc:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self.timeout)
                self.send({"op": "cancel", "id": request})
            raise NoAnswer(f"the supervisor did not answer {message.get('op')}: {exc}") \
                from None
        finally:
            self.sock.settimeout(self.timeout)  # the unanswered sends block as long


class RemotePool(Generic[IP]):
    """A worker's view of the supervisor's address pool (the one pool of all workers).

    Duck-types the parts of `tunnel.protocol.server.AddressPool` the server and its hooks
    use: `allocate`, `release`, `peek`; `reserve`/`assignments` belong to the supervisor
    (ifconfig-pool-persist is done there).
    """

    def __init__(self, requests: SupervisorRequests, kind: type[IP]) -> None:
        self._requests = requests
        self._kind: type[IP] = kind
        self._family = 6 if kind is ipaddress.IPv6Address else 4

    def allocate(self, common_name: str | None = None) -> IP | None:
        answer = self._requests.ask({"op": "alloc", "v": self._family, "cn": common_name})
        address = answer.get("address")
        return None if address is None else self._kind(address)

    def peek(self, common_name: str | None = None) -> IP | None:
        answer = self._requests.ask({"op": "peek", "v": self._family, "cn": common_name})
        address = answer.get("address")
        return None if address is None else self._kind(address)

    def release(self, address: IP) -> None:
        self._requests.send({"op": "release", "v": self._family, "address": str(address)})

    def reserve(self, common_name: str, address: IP) -> bool:
        return False

    def assignments(self) -> dict[str, IP]:
        return {}


# -- status snapshots ----------------------------------------------------------------------

def snapshot_to_json(snapshot: StatusSnapshot, worker: int) -> dict[str, Any]:
    return {
        "title": snapshot.title, "now": snapshot.now, "worker": worker,
        "traffic": dataclasses.asdict(snapshot.traffic),
        "pool": dataclasses.asdict(snapshot.pool),
        "arena": dataclasses.asdict(snapshot.arena),
        "link": dataclasses.asdict(snapshot.link),
        "clients": [dataclasses.asdict(row) for row in snapshot.clients or ()],
        "drops": snapshot.drops,
        "runs": dataclasses.asdict(snapshot.runs) if snapshot.runs is not None else None,
        "run_block": snapshot.run_block,
        "memory": [dataclasses.asdict(row) for row in snapshot.memory],
    }


def _ints(cls: Any, value: Any) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: int(value.get(name, 0)) for name in names})


def snapshot_from_json(value: dict[str, Any]) -> StatusSnapshot:
    rows = []
    for row in value.get("clients", ()):
        rows.append(ClientRow(
            common_name=str(row["common_name"]), real_address=str(row["real_address"]),
            virtual_address=str(row["virtual_address"]),
            bytes_received=int(row["bytes_received"]), bytes_sent=int(row["bytes_sent"]),
            connected_since=float(row["connected_since"]), client_id=int(row["client_id"]),
            peer_id=None if row["peer_id"] is None else int(row["peer_id"]),
            cipher=str(row["cipher"]), last_ref=float(row["last_ref"])))
    return StatusSnapshot(
        title=str(value["title"]), now=float(value["now"]),
        traffic=_ints(Traffic, value["traffic"]), pool=_ints(PoolStats, value["pool"]),
        arena=_ints(ArenaCounters, value["arena"]), link=_ints(DriverStats, value["link"]),
        clients=rows, drops={str(k): int(v) for k, v in dict(value.get("drops", {})).items()},
        runs=_ints(PoolStats, value["runs"]) if value.get("runs") else None,
        run_block=int(value.get("run_block", 0)),
        memory=[_memory_row(row) for row in value.get("memory", ())])


def _memory_row(row: dict[str, Any]) -> MemoryRow:
    return MemoryRow(
        common_name=str(row["common_name"]), real_address=str(row["real_address"]),
        peer_id=None if row["peer_id"] is None else int(row["peer_id"]),
        **{name: int(row[name]) for name in (
            "iterations", "entries_freed", "bytes_freed", "detached", "live", "buffers_taken")})


def _sum(cls: Any, items: list[Any]) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: sum(getattr(item, name) for item in items) for name in names})


def merge_snapshots(title: str, now: float, parts: list[StatusSnapshot]) -> StatusSnapshot:
    """One server's status from its workers': counters summed, clients of all of them (their
    client ids are unique already: the supervisor gives them as it places sessions)."""
    clients: list[ClientRow] = [row for part in parts for row in part.clients or ()]
    clients.sort(key=lambda row: (row.connected_since, row.client_id))
    drops: dict[str, int] = {}
    for part in parts:
        for cause, n in part.drops.items():
            drops[cause] = drops.get(cause, 0) + n
    return StatusSnapshot(
        title=title, now=now,
        traffic=_sum(Traffic, [p.traffic for p in parts]),
        pool=_sum(PoolStats, [p.pool for p in parts]),
        arena=_sum(ArenaCounters, [p.arena for p in parts]),
        link=_sum(DriverStats, [p.link for p in parts]),
        clients=clients, drops=drops,
        # Each worker's run pool (its own driver's), summed; each connection lives in one.
        runs=_sum(PoolStats, runs) if (runs := [p.runs for p in parts if p.runs]) else None,
        run_block=max((p.run_block for p in parts), default=0),
        memory=[row for p in parts for row in p.memory])
