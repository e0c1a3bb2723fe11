"""One worker process of a multi-worker server (`tunnel server --workers N`, workers.py).

A worker is an ordinary `ServerRuntime` with four differences, all given by the supervisor:
its UDP socket is one of the reuseport group (inherited fd), its TUN device is one queue of
the multi-queue device the supervisor configured (inherited fd; the supervisor runs up/down
and keeps the device), its address pool is the supervisor's (`RemotePool`), and it hands out
only the peer-ids `index, index + N, ...`, which is what the UDP steering program relies on.
A session's client id is the one the supervisor gave as it placed it; its own numbering,
`first, first + N, ...` (unique across the workers), is for a placement whose answer was
lost. It writes no status file and has no management interface: the supervisor asks it for
its status over the control socket and merges the workers', and forwards the management
interface's kill commands.

    python -m tunnel.app.worker --config FILE --index I --workers N --fds SOCK,TUN,REQ,CTL
        --tun-name NAME --cookie-key-fd FD [--vnet-hdr] [--tso] [--first-client-id C]

All workers verify cookies with one key, the supervisor's (read from a pipe at start), so
the worker a reset was steered to and the one its proof was steered to need not be the same.
A proof that verified is placed by the supervisor (`place`): the session is made here, or
the datagram is handed to the worker chosen, which feeds it into its server as if it had
arrived on its socket (verified again there: nothing of the hand-off is trusted).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import cast

from prometheus_client import generate_latest

from tunnel.app.logsetup import setup_logging
from tunnel.app.management import Management
from tunnel.app.management.runtime_host import host_for
from tunnel.app.metrics import MetricsServer
from tunnel.app.peers import Peer
from tunnel.app.privileges import lookup
from tunnel.app.run import StartupError, _load
from tunnel.app.serve import ServerRuntime, freeze_startup_heap
from tunnel.app.worker_ipc import (
    ANSWER_TIMEOUT,
    MessageReader,
    NoAnswer,
    RemotePool,
    SupervisorRequests,
    send_message,
    snapshot_to_json,
)
from tunnel.config import TunnelConfig
from tunnel.config.mgmt_model import ManagementOptions
from tunnel.io.driver import Driver
from tunnel.io.loop import new_event_loop
from tunnel.io.tcp_server import TcpServerDriver
from tunnel.io.tun import TunDevice
from tunnel.protocol.cookie import COOKIE_KEY_LEN
from tunnel.protocol.events import Event, SessionClosed
from tunnel.protocol.server import Network, ServerSettings
from tunnel.protocol.session import Session

__all__ = ["WorkerRuntime", "main"]


class _SharedQueue:
    """The worker's stand-in for `TunnelDevice`: one queue, configured by the supervisor."""

    def __init__(self, tun: TunDevice, max_mtu: int) -> None:
        self.tun: TunDevice | None = tun
        self.max_mtu = max_mtu
        self.name = tun.name

    def close(self, *, keep: bool = False) -> None:
        # `keep` (persist-tun) does not matter here: the supervisor owns the device.
        if self.tun is not None:
            self.tun.close()  # this process's fd only: the supervisor keeps the queue attached
            self.tun = None


class _ForwardingManagement:
    """A worker's stand-in for the management interface, which lives in the supervisor: the
    per-client notifications (>CLIENT:ESTABLISHED, ...) its `ServerHost` sends are forwarded
    there and broadcast; the server's state (>STATE:) and the hold are the supervisor's."""

    def __init__(self, options: ManagementOptions, requests: socket.socket) -> None:
        self.options = dataclasses.replace(options, hold=False, query_passwords=False)
        self.host: object = None
        self._requests = requests

    def broadcast(self, *lines: str) -> None:
        send_message(self._requests, {"op": "notify", "lines": list(lines)})

    def state(self, name: str, description: str = "", **_where: object) -> None:
        pass

    async def hold(self) -> None:
        return


class WorkerRuntime(ServerRuntime):
    def __init__(self, cfg: TunnelConfig, log: logging.Logger, *, index: int, workers: int,
                 sock: socket.socket, tun: TunDevice, requests: socket.socket,
                 control: socket.socket, first_client_id: int | None = None,
                 cookie_key: bytes | None = None) -> None:
        management = None
        if cfg.management is not None:
            management = cast(Management, _ForwardingManagement(cfg.management, requests))
        super().__init__(cfg, log, lookup(cfg.user, cfg.group), management,
                         host_factory=host_for if management is not None else None)
        self.index, self.workers = index, workers
        self.first_client_id = index if first_client_id is None else first_client_id
        self._link, self._queue = sock, tun
        self.requests, self.control = requests, control
        self._control_messages = MessageReader(control)
        self.asks = SupervisorRequests(requests)  # the one way to ask the supervisor
        self.device = _SharedQueue(tun, cfg.tun_mtu)  # type: ignore[assignment]
        self.cookie_key = cookie_key
        self._pinned: dict[int, bytes] = {}  # peer-id -> the client's session id
        # ... and back: the sessions here of each pinned session id. Usually one, but a
        # client that proved it receives may reuse another's id (it is in clear on the wire)
        # from its own address: the pin is the id's, and goes with the last of them.
        self._sessions_of: dict[bytes, set[int]] = {}
        # peer-id -> the client id the supervisor gave the session when it placed it: one
        # counter for all workers, so ids grow in the order sessions are made, as stock's.
        self._client_ids: dict[int, int] = {}
        self._feeding = False  # a handed-off proof is in the server: placed here already
        # The metrics collector of one process, without its HTTP side: the supervisor asks
        # for the text and serves all workers' (workers_metrics.py).
        self.metrics: MetricsServer | None = None

    def drop_privileges(self) -> None:
        if os.geteuid() != 0:  # started again by a supervisor that already gave root up
            self.privileges_dropped = True
            return
        super().drop_privileges()

    def prepare(self, loop: asyncio.AbstractEventLoop) -> Driver | TcpServerDriver:
        driver = super().prepare(loop)
        self.peers.number_from(self.first_client_id, self.workers)
        self.peers.client_id_for = lambda entry: self._client_ids.pop(entry.peer_id, None)
        return driver

    def open_link(self) -> socket.socket:
        return self._link

    def open_device(self) -> TunDevice:
        return self._queue

    def adapt_settings(self, settings: ServerSettings) -> ServerSettings:
        settings.pool = RemotePool(self.asks, ipaddress.IPv4Address)  # type: ignore[assignment]
        if settings.pool6 is not None:
            settings.pool6 = RemotePool(  # type: ignore[assignment]
                self.asks, ipaddress.IPv6Address)
        settings.peer_ids = (self.index, self.workers)
        settings.on_routes = self._routes
        settings.place_session = self._place
        return settings

    # -- where a new session lives ------------------------------------------------------------

    def _place(self, sid: bytes, addr: tuple[str, int], raw: bytes) -> bool:
        """The server verified a new session's cookie: make it here (True) or not (False:
        the supervisor handed the datagram to the worker it chose, or refused it)."""
        if self._feeding:
            return True
        try:
            answer = self.asks.ask({"op": "place", "sid": sid.hex(), "addr": [addr[0], addr[1]],
                                    "data": base64.b64encode(raw).decode()})
        except NoAnswer as exc:  # cancelled: the supervisor unpins it when it gets there
            self.log.warning("where a new session goes: %s", exc)
            return False
        if answer.get("owner") != self.index:
            return False
        assert self.loop is not None
        # once the server made it (or not)
        self.loop.call_soon(self._confirm, sid, addr, answer.get("cid"))
        return True

    def _confirm(self, sid: bytes, addr: tuple[str, int], client_id: object = None) -> None:
        """Tell the supervisor whether the session it placed here exists: its pin stays
        (until the session ends: SessionClosed) or goes at once. `client_id`: the one the
        supervisor gave it, used when the session becomes a client (PeerRegistry)."""
        entry = self.server.peer_at(addr)
        made = entry is not None and entry.session.remote_sid is not None \
            and bytes(entry.session.remote_sid) == sid and not entry.session.is_closed
        if made:
            assert entry is not None
            self._pinned[entry.peer_id] = sid
            self._sessions_of.setdefault(sid, set()).add(entry.peer_id)
            if isinstance(client_id, int) and not isinstance(client_id, bool):
                self._client_ids[entry.peer_id] = client_id
        elif sid in self._sessions_of:
            return  # a late copy of the proof of a session made here (that moved since)
        self._pin(sid, made)

    def _pin(self, sid: bytes, add: bool) -> None:
        """Tell the supervisor a placed session exists here (pin stays) or not (pin goes)."""
        self.asks.send({"op": "pin", "sid": sid.hex(), "add": add})

    def _handoff(self, message: dict[str, object]) -> None:
        """A proof another worker verified, placed here: fed into the server as if it had
        arrived on our socket."""
        try:
            sid = bytes.fromhex(str(message["sid"]))
        except (KeyError, ValueError):
            return  # not one of the supervisor's: nothing to confirm either
        address = message.get("addr")
        try:
            if not isinstance(address, list) or len(address) != 2 or self.driver is None:
                raise ValueError("no [ip, port], or not running yet")
            data = base64.b64decode(str(message.get("data")), validate=True)
            addr = (str(address[0]), int(address[1]))
        except (ValueError, TypeError, binascii.Error):
            self._pin(sid, False)
            return
        assert self.loop is not None
        try:
            buf = self.pool.acquire()  # armed at the frame's headroom, as the driver's
            try:
                buf.append(data)
                self._feeding = True
                try:
                    self.endpoint.receive(buf, addr, self.loop.time())
                finally:
                    # Link input of the worker it arrived on, counted there: not again here,
                    # so the server's totals (the workers' summed) count it once. (The
                    # session made here counts it as its client's: the verifier made none.)
                    traffic = self.server.traffic
                    traffic.link_rx -= len(data)
                    traffic.link_rx_packets -= 1
            finally:
                self._feeding = False
                self.pool.release(buf)
            self._kick_driver()
        except Exception as exc:  # no buffer free, too long for one, a bug: that proof only
            self.log.warning("a new session handed over by another worker: dropped (%s)", exc)
        finally:
            self._confirm(sid, addr, message.get("cid"))

    def _routes(self, session: Session, routes: tuple[Network, ...], added: bool) -> None:
        for network in routes:
            self.asks.send({"op": "route", "net": str(network), "add": added})

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        # A session placed here was pinned to this worker in the UDP steering when it was
        # made (_place); it ends (also a handshake that failed or timed out): unpinned.
        if isinstance(event, SessionClosed) and event.peer_id is not None:
            self._client_ids.pop(event.peer_id, None)  # a handshake that never completed
            gone = self._pinned.pop(event.peer_id, None)
            if gone is None:
                return
            others = self._sessions_of.get(gone, set())
            others.discard(event.peer_id)
            if not others:  # the id's last session here: its pin goes
                self._sessions_of.pop(gone, None)
                self._pin(gone, False)

    def started(self) -> None:
        # ServerRuntime.started without its "Initialization Sequence Completed": the
        # supervisor says it once, when every worker runs.
        self.drop_privileges()
        assert self.loop is not None
        self.control.setblocking(False)
        self.loop.add_reader(self.control.fileno(), self._on_control)
        if self.metrics is not None:
            self.spawn(self.metrics._measure_lag())  # as MetricsServer.open() starts it
        freeze_startup_heap()  # as ServerRuntime.started: each worker is a server process
        self.asks.send({"op": "ready", "pid": _pid()})

    def _on_control(self) -> None:
        try:
            message = self._control_messages.read()
        except BlockingIOError:
            return
        except (OSError, EOFError):
            # The supervisor is gone: nobody can restart us or hand out addresses.
            self.log.error("worker %d: the supervisor went away; exiting", self.index)
            self.stop(1)
            return
        except ValueError:
            return
        if message is None:  # a chunk of a longer message: the rest follows
            return
        op = message.get("op")
        if op == "status" and self.loop is not None:
            snapshot = self.status_snapshot(self.loop.time())
            answer = snapshot_to_json(snapshot, self.index)
            answer["id"] = message.get("id")
            self._answer(answer)
        elif op == "kill" and self.loop is not None:
            try:
                killed = self._kill(message)
            except (TypeError, ValueError, IndexError):
                killed = 0
            self._answer({"id": message.get("id"), "killed": killed})
        elif op == "metrics":
            text = "" if self.metrics is None or self.driver is None else \
                generate_latest(self.metrics.registry).decode()
            self._answer({"id": message.get("id"), "text": text})
        elif op == "handoff":
            self._handoff(message)
        elif op == "kill_cn" and self.loop is not None:
            server = self.endpoint
            entry = server.table.named(str(message.get("cn")))
            if entry is not None:
                server.kill(entry.session, None, str(message.get("reason", "replaced")),
                            self.loop.time())
                self._kick_driver()


    def _answer(self, answer: dict[str, object]) -> None:
        # Waiting for room (a long status goes in chunks the supervisor reads as they come),
        # but not for ever: a supervisor that stopped reading drops the rest of a late one.
        self.control.settimeout(ANSWER_TIMEOUT)
        try:
            send_message(self.control, answer)
        except OSError as exc:
            self.log.warning("worker %d: answer to the supervisor not sent: %s", self.index, exc)
        finally:
            self.control.setblocking(False)

    def _kill(self, message: dict[str, object]) -> int:
        """The management interface's kill (by CN or real address) and client-kill (by client
        id), as ServerHost does them in one process; how many sessions it ended."""
        assert self.loop is not None
        peers: list[Peer] = []
        text = None
        if "cn" in message:
            peers = self.peers.named(str(message["cn"]))
            reason = "killed by the management interface"
        elif "address" in message:
            address = message["address"]
            if not isinstance(address, list) or len(address) != 2:
                raise ValueError(f"kill: not an [ip, port] address: {address!r}")
            entry = self.server.peer_at((str(address[0]), int(address[1])))
            peer = self.peers.by_peer_id(entry.peer_id) if entry is not None else None
            peers = [peer] if peer is not None else []
            reason = "killed by the management interface"
        elif "cid" in message:
            cid = message["cid"]
            peer = self.peers.by_client_id(int(cid)) if isinstance(cid, int) else None
            peers = [peer] if peer is not None else []
            text = str(message.get("message", "RESTART"))
            reason = f"client-kill: {text}"
        for peer in peers:
            self.server.kill(peer.session, text, reason, self.loop.time())
        if peers:
            self.loop.call_soon(self._kick_driver)  # after the answer, as in one process
        return len(peers)


def _read_key(fd: int) -> bytes:
    """The supervisor's cookie key from the pipe it wrote (and closed) before our start."""
    try:
        key = b""
        while len(key) <= COOKIE_KEY_LEN:
            chunk = os.read(fd, COOKIE_KEY_LEN + 1 - len(key))
            if not chunk:
                break
            key += chunk
    finally:
        os.close(fd)
    if len(key) != COOKIE_KEY_LEN:
        raise ValueError(f"{len(key)} bytes, not {COOKIE_KEY_LEN}")
    return key


def _pid() -> int:
    return os.getpid()


class _Prefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{self.prefix}{record.msg}"
        return True


def _worker_config(cfg: TunnelConfig) -> TunnelConfig:
    """What the supervisor does is not repeated here: status file, pool persistence,
    daemon/writepid and up/down run in the supervisor only."""
    mine = copy.copy(cfg)
    mine.status_file = None
    mine.ops = dataclasses.replace(cfg.ops, ifconfig_pool_persist=None, daemon=None,
                                   writepid=None)
    return mine


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunnel-worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--fds", required=True)
    parser.add_argument("--tun-name", required=True)
    parser.add_argument("--vnet-hdr", action="store_true")
    parser.add_argument("--tso", action="store_true")
    parser.add_argument("--first-client-id", type=int, default=None)
    parser.add_argument("--cookie-key-fd", type=int, required=True,
                        help="a pipe with the supervisor's cookie key, read once")
    parser.add_argument("--metrics", action="store_true",
                        help="keep the metrics collector (the supervisor serves them)")
    parser.add_argument("--script-env", default="{}",
                        help="the supervisor's sticky script variables (JSON)")
    args = parser.parse_args(argv)
    sock_fd, tun_fd, req_fd, ctl_fd = (int(x) for x in args.fds.split(","))
    try:
        cookie_key = _read_key(args.cookie_key_fd)
    except (OSError, ValueError) as exc:
        print(f"tunnel server worker {args.index}: error: the cookie key: {exc}",
              file=sys.stderr)
        return 1
    try:
        cfg = _worker_config(_load(args.config, "server"))
    except StartupError as exc:
        print(f"tunnel server worker {args.index}: error: {exc}", file=sys.stderr)
        return 1
    log = setup_logging(verb=cfg.verb, mute=cfg.mute, log_file=cfg.log_file, append=True,
                        machine_readable=cfg.ops.machine_readable_output)
    for handler in log.handlers:
        handler.addFilter(_Prefix(f"worker {args.index}: "))
    sock = socket.socket(fileno=sock_fd)
    tun = TunDevice(tun_fd, args.tun_name, vnet_hdr=args.vnet_hdr, tso=args.tso)
    requests = socket.socket(fileno=req_fd)
    control = socket.socket(fileno=ctl_fd)
    runtime = WorkerRuntime(cfg, log, index=args.index, workers=args.workers, sock=sock,
                            tun=tun, requests=requests, control=control,
                            first_client_id=args.first_client_id, cookie_key=cookie_key)
    if args.metrics:
        runtime.metrics = MetricsServer(("127.0.0.1", 0), log)
        runtime.metrics.attach(runtime)
    runtime.scripts.sticky.update(
        {str(k): str(v) for k, v in dict(json.loads(args.script_env)).items()})
    loop = new_event_loop()
    try:
        return loop.run_until_complete(runtime.run())
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
