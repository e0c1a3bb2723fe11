"""`tunnel server --workers N`: N worker processes behind one port and one TUN device.

The supervisor (this process) does what is done once per server and owns what must be
shared; the workers (worker.py, one `ServerRuntime` each) do everything per client:

- the link: N UDP sockets of one `SO_REUSEPORT` group and the steering program that sends a
  client's datagrams to the worker holding its session, by peer-id or session id, whatever
  its source address (tunnel/io/steering.py); socket i goes to worker i;
- the device: one multi-queue TUN device, configured here (addresses, routes, `up`/`down`),
  queue i to worker i, and the eBPF program that picks the queue of each packet by its
  destination (a map of client address/iroute -> worker, written here as workers report
  their clients' routes);
- the address pool (v4 and v6): one, here; workers ask for addresses (`RemotePool`), so no
  address is handed out twice, a returning CN gets its previous one, ifconfig-pool-persist is
  kept here, and max-clients counts the clients of all workers. Without duplicate-cn a CN that
  connects to one worker while another holds it ends the older session there;
- the status file: every status interval the workers' snapshots are asked for and merged;
- the management interface (workers_host.py): status, load-stats, bytecount from the
  workers' snapshots; kill / client-kill forwarded to the workers; client ids from one counter
  here, given to each session as it is placed, so they grow in the order clients come.

All sockets and queues stay open here for the server's life: the steering programs index
them in the order they were opened, and a closed one would renumber the rest. A worker that
dies is restarted on the same socket and queue (its clients reconnect: their sessions were in
it); one that dies more than `RESTART_LIMIT` times in `RESTART_PERIOD` seconds, or fails
before it ever started, ends the server with that reason. The supervisor reads no network
input, gives up root (`user`/`group`) once the workers are started (a worker started again
runs unprivileged from the start) and sends nothing but JSON to workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunnel.app.build import build_frame, build_server_settings, build_session_settings
from tunnel.app.ccd import PoolPersistFile, load_pool_persist
from tunnel.app.device import TunnelDevice, server_device_config
from tunnel.app.link import format_address, link_name, open_server_sockets
from tunnel.app.management import Management, ManagementError
from tunnel.app.management.runtime_host import announce_server_up
from tunnel.app.metrics import MetricsError, MetricsServer
from tunnel.app.privileges import drop, lookup
from tunnel.app.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    StartupError,
    describe_error,
    hold_until_released,
    management_title,
)
from tunnel.app.scripts import ScriptRunner
from tunnel.app.status import StatusSnapshot, StatusWriter, render_status
from tunnel.app.worker_ipc import MessageReader, send_message
from tunnel.app.workers_host import WorkersHost, merged_status
from tunnel.app.workers_metrics import serve_workers
from tunnel.config import TunnelConfig
from tunnel.config.model import is_tcp
from tunnel.io.steering import SessionSteering, TunSteering
from tunnel.protocol.cookie import COOKIE_KEY_LEN
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.server import AddressPool

__all__ = ["RESTART_LIMIT", "RESTART_PERIOD", "SharedPool", "Supervisor", "resolve_workers",
           "unsupported_with_workers"]

RESTART_LIMIT = 5
# Sessions placed on a worker (pinned, the proving datagram handed to it) that it has not
# confirmed yet, at most, per worker: beyond it a proof is dropped (the client resends it).
HANDOFF_LIMIT = 64
RESTART_PERIOD = 60.0
STOP_GRACE = 10.0  # seconds a worker has to say goodbye to its clients at exit
STATUS_TIMEOUT = 2.0
MAX_HANDOFF_TEXT = 4 * 65536 // 3 + 4  # one UDP datagram, base64
# Where a worker's own client ids start (for a session the supervisor gave none: its place
# answer was lost): far above the supervisor's counter, so the two never meet.
_LOCAL_CLIENT_IDS = 1 << 40


def unsupported_with_workers(cfg: TunnelConfig, metrics: bool = False) -> str | None:
    # (`metrics` is kept for the callers: the endpoint works with workers, workers_metrics.py)
    """Why this config cannot run on several workers (yet), or None."""
    if is_tcp(cfg.proto):
        return f"proto {cfg.proto} (only UDP is steered to workers)"
    mgmt = cfg.management
    if mgmt is not None and mgmt.client_auth:
        return "management-client-auth (per-client decisions are not forwarded to workers)"
    if mgmt is not None and mgmt.up_down:
        return "management-up-down (not with workers yet)"
    if mgmt is not None and mgmt.query_passwords:
        return "management-query-passwords (each worker would need the answer)"
    if cfg.client_to_client:
        return "client-to-client (two clients may be on different workers)"
    return None


def resolve_workers(cfg: TunnelConfig, asked: int | None, log: logging.Logger,
                    metrics: bool = False) -> int:
    """The worker count: `asked`, or by default the number of cores where the config allows
    it. Asking for more than one with a config that cannot have them is an error."""
    reason = unsupported_with_workers(cfg, metrics)
    if asked is None:
        cores = len(os.sched_getaffinity(0))
        if cores > 1 and reason is None:
            reason = _no_bpf()
        if cores > 1 and reason is not None:
            log.info("one worker process: %s", reason)
            return 1
        return cores
    if asked > 1 and reason is not None:
        raise StartupError(f"--workers {asked}: not possible with {reason}; use --workers 1")
    return asked


def _no_bpf() -> str | None:
    """Why the TUN steering program cannot be loaded here (a container without CAP_BPF /
    CAP_SYS_ADMIN, a kernel without BPF), or None. Probed by loading it once."""
    try:
        TunSteering.create(max_entries=1).close()
    except OSError as exc:
        return f"no BPF here ({exc.strerror or exc}), needed to steer packets to workers"
    return None


def _session_id(text: str) -> bytes | None:
    """A request's session id (hex), or None if it is not one."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


# -- the shared pool -----------------------------------------------------------------------

@dataclass(slots=True)
class SharedPool:
    """The address pools of all workers, who holds what, and the TUN steering map."""

    pools: dict[int, AddressPool[Any]]
    max_clients: int
    duplicate_cn: bool
    steering: TunSteering | None
    log: logging.Logger
    kill_cn: Any  # Callable[[int, str], None]: tell a worker to end a CN's session
    sessions: SessionSteering | None = None
    pins: dict[bytes, int] = field(default_factory=dict)  # client session id -> worker
    per_worker: dict[int, int] = field(default_factory=dict)  # how many pins each worker has
    # Placed (pinned) sessions their worker has not said it made or refused yet: at most
    # HANDOFF_LIMIT per worker, so hand-offs that pile up are refused, not queued.
    placing: dict[bytes, int] = field(default_factory=dict)
    held: dict[int, dict[int, tuple[int, str | None]]] = field(default_factory=dict)
    cn_at: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    _full_warned: float = 0.0
    _pins_warned: float = 0.0
    _turn: int = 0

    def __post_init__(self) -> None:
        for version in self.pools:
            self.held[version] = {}
            self.cn_at[version] = {}

    def clients(self) -> int:
        return len(self.held.get(4, {}))

    def alloc(self, worker: int, version: int, cn: str | None) -> str | None:
        pool = self.pools.get(version)
        if pool is None:
            return None
        held, cn_at = self.held[version], self.cn_at[version]
        if cn is not None and not self.duplicate_cn:
            holder = cn_at.get(cn)
            if holder is not None and holder[0] != worker:
                # multi.c: without duplicate-cn the newer connection wins, and takes the
                # older one's address (ifconfig_pool_acquire by CN).
                other, number = holder
                self.kill_cn(other, cn)
                held[number] = (worker, cn)
                cn_at[cn] = (worker, number)
                return str(pool._kind(number))
        if version == 4 and len(held) >= self.max_clients:
            now = time.monotonic()
            if now - self._full_warned > 10:
                self._full_warned = now
                self.log.warning("MULTI: new connection refused: max-clients (%d) reached "
                                 "across the workers", self.max_clients)
            return None
        address = pool.allocate(cn)
        if address is None:
            return None
        held[int(address)] = (worker, cn)
        if cn is not None and not self.duplicate_cn:
            cn_at[cn] = (worker, int(address))
        return str(address)

    def peek(self, version: int, cn: str | None) -> str | None:
        pool = self.pools.get(version)
        address = None if pool is None else pool.peek(cn)
        return None if address is None else str(address)

    def release(self, worker: int, version: int, text: str) -> None:
        pool = self.pools.get(version)
        if pool is None:
            return
        address = ipaddress.ip_address(text)
        number = int(address)
        holder = self.held[version].get(number)
        if holder is None or holder[0] != worker:
            return  # handed to a newer connection of its CN on another worker meanwhile
        del self.held[version][number]
        cn = holder[1]
        if cn is not None and self.cn_at[version].get(cn) == (worker, number):
            del self.cn_at[version][cn]
        pool.release(address)

    def route(self, worker: int, network: str, added: bool) -> None:
        net = ipaddress.ip_network(network)
        key = str(net)
        if added:
            self.routes[key] = worker
            if self.steering is not None:
                self.steering.set(net, worker)
        elif self.routes.get(key) == worker:
            del self.routes[key]
            if self.steering is not None:
                self.steering.remove(net)

    def pin(self, worker: int, session_id: bytes, added: bool) -> bool:
        """A session exists on `worker` (added) or ended there: its control packets are
        steered there by the pinned map, which nothing from the network writes or evicts.
        False if the map is full (said in the log at most every 10 s)."""
        if len(session_id) != 8:
            raise ValueError("a session id is 8 bytes")
        if self.placing.get(session_id) == worker:
            del self.placing[session_id]  # its worker says it made the session, or did not
        if added:
            owner = self.pins.get(session_id)
            if owner == worker:
                return True
            if self.sessions is not None:
                try:
                    self.sessions.pin(session_id, worker)
                except OSError as exc:
                    now = time.monotonic()
                    if now - self._pins_warned > 10:
                        self._pins_warned = now
                        self.log.warning("worker %d: a new session refused: %s (%d sessions "
                                         "pinned)", worker, exc, len(self.pins))
                    return False
            if owner is not None:
                self.per_worker[owner] -= 1
            self.pins[session_id] = worker
            self.per_worker[worker] = self.per_worker.get(worker, 0) + 1
        elif self.pins.get(session_id) == worker:
            del self.pins[session_id]
            self.per_worker[worker] -= 1
            if self.sessions is not None:
                self.sessions.unpin(session_id)
        return True

    def place(self, asker: int, session_id: bytes, running: list[int]) -> int | None:
        """The worker a new session goes to, once `asker` verified its cookie: where it is
        pinned already (a resent proof), else the running worker with the fewest sessions
        (ties in turn), pinned there now, before the session exists, so the client's next
        packets find it. None: the pinned map is full (the proof is dropped; the client
        resends it)."""
        owner = self.pins.get(session_id)
        if owner is not None:
            return owner
        busy = list(self.placing.values())
        running = [w for w in running if busy.count(w) < HANDOFF_LIMIT]
        if not running:
            return None
        self._turn += 1
        count = len(running)
        owner = min((running[(self._turn + k) % count] for k in range(count)),
                    key=lambda w: self.per_worker.get(w, 0))
        if not self.pin(owner, session_id, True):
            return None
        self.placing[session_id] = owner
        return owner

    def forget(self, worker: int) -> None:
        """A worker died: what it held is free again."""
        for session_id, owner in list(self.placing.items()):
            if owner == worker:
                del self.placing[session_id]
        for session_id, owner in list(self.pins.items()):
            if owner == worker:
                self.pin(worker, session_id, False)
        for version, held in self.held.items():
            pool = self.pools[version]
            for number, (owner, _cn) in list(held.items()):
                if owner == worker:
                    self.release(worker, version, str(pool._kind(number)))
        for key, owner in list(self.routes.items()):
            if owner == worker:
                self.route(worker, key, False)


# -- the workers ---------------------------------------------------------------------------

@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    requests: socket.socket | None = None
    control: socket.socket | None = None
    ready: bool = False
    ever_ready: bool = False
    restarting: bool = False  # told to exit by a restart signal: started again at once
    pidfd: int | None = None  # readable once the process has exited
    pid: int = 0
    spawns: int = 0  # how often it was started (its client ids differ each time)
    exits: deque[float] = field(default_factory=deque)
    # The last answered request of its (the id, how to undo what the answer gave, or None):
    # the worker asks one at a time, so a `cancel` (it timed out) can only be for that one.
    last_answer: tuple[Any, Callable[[], None] | None] | None = None
    # What was read of each of its sockets (a long message comes in chunks), by socket.
    readers: dict[socket.socket, MessageReader] = field(default_factory=dict)

    def messages(self, sock: socket.socket) -> MessageReader:
        """The reader of `sock` (one of this worker's current sockets)."""
        reader = self.readers.get(sock)
        if reader is None:
            self.readers = {s: r for s, r in self.readers.items()
                            if s is self.requests or s is self.control}
            reader = self.readers[sock] = MessageReader(sock)
        return reader


class Supervisor:
    def __init__(self, config_path: str, cfg: TunnelConfig, workers: int,
                 log: logging.Logger, metrics_listen: tuple[str, int] | None = None) -> None:
        self.config_path = config_path
        self.metrics_listen = metrics_listen or cfg.metrics_listen
        self.metrics: MetricsServer | None = None
        self.cfg = cfg
        self.target = lookup(cfg.user, cfg.group)
        self.count = workers
        self.log = log
        self.workers = [_Worker(i) for i in range(workers)]
        self.socks: list[socket.socket] = []
        self.device = TunnelDevice(cfg, log, max_mtu=cfg.tun_mtu)
        self.scripts = ScriptRunner(cfg, log)
        self.device_env: dict[str, str] | None = None
        self.steering: TunSteering | None = None
        self.sessions: SessionSteering | None = None
        self.cookie_key = b""
        self.status: StatusWriter | None = None
        self.persist: PoolPersistFile | None = None
        self.pool: SharedPool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[int] | None = None
        self.management: Management | None = None
        self.stopping = False
        self._request_id = 0

    # -- start -------------------------------------------------------------------------------

    def prepare(self) -> None:
        cfg, log = self.cfg, self.log
        frame = build_frame(cfg)
        self.device.max_mtu = frame.tun_mtu
        self.socks = open_server_sockets(cfg, self.count)
        family = self.socks[0].family
        # The same settings the workers build: a bad certificate fails here, before any fork.
        settings = build_server_settings(
            cfg, build_session_settings(cfg, ipv6_link=family == socket.AF_INET6))
        # One cookie key for all workers: a cookie issued by any of them is verified by any
        # (the reset and the proof may be steered to different ones). Never logged; handed
        # to each worker through a pipe (_spawn), not argv or the environment.
        self.cookie_key = os.urandom(COOKIE_KEY_LEN)
        # Pins are sessions that exist (or are being handed to their worker). A worker's peer
        # table holds at most max-clients sessions, established or in their handshake (the
        # server's half-open bound is within it), so N * max-clients, plus HANDOFF_LIMIT
        # placements per worker in flight, is all the map ever holds; a pin beyond it fails
        # and that proof is dropped. Not preallocated: memory only for sessions that exist.
        self.sessions = SessionSteering.create(
            self.count, max_sessions=self.count * (cfg.max_clients + HANDOFF_LIMIT))
        self.sessions.attach(self.socks[0])
        host, port = self.socks[0].getsockname()[:2]
        log.info("%s link local (bound): %s, %d workers (SO_REUSEPORT, steered by session id "
                 "and peer-id; a new session to the least busy worker once its cookie proved)",
                 link_name(family, False), format_address((host, port), family), self.count)
        self.device.open(queues=self.count)
        self.steering = TunSteering.create()
        self.steering.attach(self.device.queues[0].fileno())
        log.info("TUN/TAP device %s: %d queues, steered by destination", self.device.name,
                 self.count)
        self.device.configure(server_device_config(cfg, log))
        self._run_up()
        pools: dict[int, AddressPool[Any]] = {4: settings.pool}
        if settings.pool6 is not None:
            pools[6] = settings.pool6
        ops = cfg.ops
        if ops.ifconfig_pool_persist is not None:
            taken = load_pool_persist(ops.ifconfig_pool_persist, settings.pool, log)
            if taken:
                log.info("ifconfig-pool-persist: %d address(es) from %s", taken,
                         ops.ifconfig_pool_persist)
            if ops.ifconfig_pool_persist_seconds > 0:
                self.persist = PoolPersistFile(ops.ifconfig_pool_persist)
        self.pool = SharedPool(pools, cfg.max_clients, cfg.duplicate_cn, self.steering, log,
                               self._kill_cn, self.sessions)
        if cfg.status_file is not None:
            try:
                self.status = StatusWriter(cfg.status_file, log)
            except OSError as exc:
                raise StartupError(
                    f"{cfg.source}:{cfg.line_of('status')}: cannot open the status file "
                    f"{cfg.status_file}: {exc.strerror or exc}") from None

    def _run_up(self) -> None:
        cfg = self.cfg
        if not ({"up", "route-up"} & set(cfg.ops.scripts)) or cfg.ifconfig is None:
            return
        env = self.scripts.device_env(self.device.name, cfg.tun_mtu, str(cfg.ifconfig.ip),
                                      str(cfg.ifconfig.netmask), self.scripts.context)
        self.device_env = env
        if self.scripts.up_down("up", env) is False:
            raise StartupError("the up script failed")
        self.scripts.route_up({**env, "redirect_gateway": "0"})

    def _spawn(self, worker: _Worker) -> None:
        assert self.loop is not None
        req_parent, req_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl_parent, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock = self.socks[worker.index]
        queue = self.device.queues[worker.index]
        # The cookie key through a pipe the worker reads once at start (32 bytes fit its
        # buffer, so the write never blocks): not in argv or environ, which /proc shows.
        key_read, key_write = os.pipe()
        try:
            os.write(key_write, self.cookie_key)
        finally:
            os.close(key_write)
        fds = (sock.fileno(), queue.fileno(), req_child.fileno(), ctl_child.fileno())
        argv = [sys.executable, "-m", "tunnel.app.worker", "--config", self.config_path,
                "--index", str(worker.index), "--workers", str(self.count),
                "--fds", ",".join(str(fd) for fd in fds), "--tun-name", queue.name,
                "--cookie-key-fd", str(key_read),
                "--first-client-id",
                str(_LOCAL_CLIENT_IDS + worker.index + self.count * (worker.spawns << 20))]
        worker.spawns += 1
        if queue.vnet_hdr:
            argv.append("--vnet-hdr")
        if queue.tso:
            argv.append("--tso")  # TUNSETOFFLOAD is the device's: every queue reads that way
        if self.metrics_listen is not None:
            argv.append("--metrics")
        if self.scripts.sticky:
            # Stock keeps one environment per process: what `up` and `route-up` set (dev,
            # ifconfig_*, ...) is there for every later hook, which here run in the workers.
            argv += ["--script-env", json.dumps(self.scripts.sticky)]
        try:
            worker.proc = subprocess.Popen(argv, pass_fds=(*fds, key_read))
        finally:
            req_child.close()
            ctl_child.close()
            os.close(key_read)
        req_parent.setblocking(False)
        ctl_parent.setblocking(False)
        worker.requests, worker.control = req_parent, ctl_parent
        worker.ready = False
        worker.pid = worker.proc.pid
        self._watch_exit(worker)
        self.loop.add_reader(req_parent.fileno(), self._on_request, worker)
        self.loop.add_reader(ctl_parent.fileno(), self._on_answer, worker)

    def _close_channels(self, worker: _Worker) -> None:
        assert self.loop is not None
        for sock in (worker.requests, worker.control):
            if sock is not None:
                self.loop.remove_reader(sock.fileno())
                sock.close()
        worker.requests = worker.control = None
        worker.last_answer = None  # its next process counts its requests from 1 again
        worker.ready = False

    # -- messages ----------------------------------------------------------------------------

    def _on_request(self, worker: _Worker) -> None:
        sock = worker.requests
        assert sock is not None and self.pool is not None
        messages = worker.messages(sock)
        for _ in range(64):
            try:
                message = messages.read()
            except BlockingIOError:
                return
            except (OSError, EOFError):
                assert self.loop is not None
                self.loop.remove_reader(sock.fileno())  # gone: the exit watcher takes over
                return
            except ValueError as exc:
                self.log.warning("worker %d: bad request: %s", worker.index, exc)
                continue
            if message is None:
                continue  # a chunk of a longer request
            try:
                self._handle(worker, message)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                self.log.warning("worker %d: bad request: %s", worker.index, exc)

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        assert self.pool is not None and worker.requests is not None
        op = message.get("op")
        version = int(message.get("v", 4))
        if op == "alloc":
            address = self.pool.alloc(worker.index, version, message.get("cn"))
            pool = self.pool

            def give_back() -> None:
                assert address is not None
                pool.release(worker.index, version, address)

            self._answer(worker, message, {"address": address},
                         None if address is None else give_back)
        elif op == "peek":
            self._answer(worker, message, {"address": self.pool.peek(version, message.get("cn"))})
        elif op == "cancel":  # the worker gave up waiting for this answer: it never used it
            if worker.last_answer is not None and worker.last_answer[0] == message.get("id"):
                undo = worker.last_answer[1]
                worker.last_answer = None
                if undo is not None:
                    undo()
        elif op == "release":
            self.pool.release(worker.index, version, str(message["address"]))
        elif op == "route":
            self.pool.route(worker.index, str(message["net"]), bool(message["add"]))
        elif op == "notify":  # a client notification of the worker's (>CLIENT:...)
            if self.management is not None:
                lines = [str(line).replace("\r", " ").replace("\n", " ")
                         for line in message.get("lines", ())]
                self.management.broadcast(*lines)
        elif op == "pin":
            self.pool.pin(worker.index, bytes.fromhex(str(message["sid"])),
                          bool(message["add"]))
        elif op == "place":
            pool, sid = self.pool, str(message.get("sid"))
            fresh = _session_id(sid) not in pool.pins
            owner = self._place(worker, message)

            def unpin() -> None:
                pool.pin(worker.index, bytes.fromhex(sid), False)

            # A new pin on the asker waits for its confirmation (`pin`), which never comes
            # if the asker gave up waiting: the cancel unpins it. A pin that was there (a
            # resent proof) or a hand-off to another worker (which confirms it) stays.
            answer: dict[str, Any] = {"owner": owner}
            if owner == worker.index:
                answer["cid"] = self._take_client_id()
            self._answer(worker, message, answer,
                         unpin if fresh and owner == worker.index else None)
        elif op == "ready":
            worker.ready = worker.ever_ready = True
            self.log.info("worker %d (pid %d) running", worker.index, worker.pid)
            if all(w.ever_ready for w in self.workers) and not self._announced:
                self._announced = True
                self.log.info("Initialization Sequence Completed")
                self._management_up()

    _announced = False
    # Client ids (management's CID), one counter for all workers, given to each session as
    # it is placed: they grow in the order sessions are made, as in one stock process.
    _next_client_id = 0

    def _take_client_id(self) -> int:
        client_id = self._next_client_id
        self._next_client_id += 1
        return client_id

    def _answer(self, worker: _Worker, message: dict[str, Any], answer: dict[str, Any],
                undo: Callable[[], None] | None = None) -> None:
        """Answer a worker's request, with its `id`, and remember how to undo it (`cancel`)."""
        assert worker.requests is not None
        worker.last_answer = (message.get("id"), undo)
        send_message(worker.requests, {**answer, "id": message.get("id")})

    def _place(self, worker: _Worker, message: dict[str, Any]) -> int | None:
        """`worker` verified a new session's cookie: which worker makes the session (None:
        none, the proof is dropped). If another, the proving datagram is handed to it (it
        verifies it again: nothing of the hand-off is trusted), or dropped if its control
        socket is full: a hand-off never blocks the supervisor."""
        assert self.pool is not None
        try:
            sid = bytes.fromhex(str(message["sid"]))
            data = str(message["data"])
            address = message["addr"]
            if len(sid) != 8 or len(data) > MAX_HANDOFF_TEXT or not isinstance(address, list) \
                    or len(address) != 2:
                raise ValueError("not a session id, datagram and [ip, port]")
        except (KeyError, ValueError, TypeError) as exc:
            self.log.warning("worker %d: bad place request: %s", worker.index, exc)
            return None
        running = [w.index for w in self.workers if w.control is not None and
                   (w.ready or w is worker)]
        owner = self.pool.place(worker.index, sid, running)
        if owner is None or owner == worker.index:
            return owner
        target = self.workers[owner].control
        try:
            if target is None:
                raise ConnectionError("gone")
            send_message(target, {"op": "handoff", "sid": sid.hex(), "addr": address,
                                  "data": data, "cid": self._take_client_id()})
        except OSError:
            self.pool.pin(owner, sid, False)
            return None
        return owner

    def _on_answer(self, worker: _Worker) -> None:
        """An answer outside `ask`: one that came after its timeout. Read and dropped, so a
        worker sending a large one is not blocked until the next ask."""
        sock = worker.control
        assert sock is not None
        messages = worker.messages(sock)
        while True:
            try:
                messages.read()
            except BlockingIOError:
                return
            except ValueError:
                continue
            except (OSError, EOFError):
                assert self.loop is not None
                self.loop.remove_reader(sock.fileno())
                return

    def ask(self, message: dict[str, Any], timeout: float = STATUS_TIMEOUT
            ) -> list[tuple[int, dict[str, Any]]]:
        """Ask every running worker `message` and wait for their answers, synchronously (the
        management commands and the metrics collector are; the status file uses it too, so
        there is one way to ask): (worker index, answer) of those that answered within
        `timeout`. Meanwhile the workers' address requests are served (a worker waiting
        for an address cannot answer); a late answer to an earlier ask is dropped."""
        waiting: dict[int, _Worker] = {}
        for worker in self.workers:
            if not worker.ready or worker.control is None:
                continue
            self._request_id += 1
            try:
                send_message(worker.control, {**message, "id": self._request_id})
            except OSError:
                continue
            waiting[self._request_id] = worker
        answers: list[tuple[int, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            socks = {}
            for worker in self.workers:
                for sock in (worker.control, worker.requests):
                    if sock is not None:
                        socks[sock.fileno()] = (worker, sock)
            ready, _, _ = select.select(list(socks), [], [], left)
            for fd in ready:
                worker, sock = socks[fd]
                if sock is worker.requests:
                    self._on_request(worker)
                    continue
                try:
                    answer = worker.messages(sock).read()
                except BlockingIOError:
                    continue
                except (OSError, EOFError, ValueError):
                    waiting = {k: w for k, w in waiting.items() if w is not worker}
                    continue
                if answer is None:
                    continue  # a chunk of a long answer (a status): the rest follows
                request = answer.get("id")
                if isinstance(request, int) and waiting.get(request) is worker:
                    del waiting[request]
                    answers.append((worker.index, answer))
        for worker in waiting.values():
            self.log.warning("worker %d: no answer to %s", worker.index, message.get("op"))
        return answers

    def _management_up(self) -> None:
        if self.management is not None:
            announce_server_up(self.management, self.cfg, self.socks[0])

    def _kill_cn(self, index: int, cn: str) -> None:
        worker = self.workers[index]
        if worker.control is not None:
            with contextlib.suppress(OSError):
                send_message(worker.control, {
                    "op": "kill_cn", "cn": cn,
                    "reason": f"replaced by a new connection with CN {cn} on another worker"})

    # -- status ------------------------------------------------------------------------------

    def snapshot(self) -> StatusSnapshot:
        """The merged status of all running workers (those that do not answer in time are
        left out, and said so in the log)."""
        return merged_status(self)

    def _write_status(self) -> None:
        if self.status is None:
            return
        snapshot = self.snapshot()
        self.status.write(render_status(snapshot, self.cfg.status_version))

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.status_interval))
            if all(w.ever_ready for w in self.workers):
                break
        while True:
            self._write_status()
            await asyncio.sleep(self.cfg.status_interval)

    async def _persist_loop(self) -> None:
        assert self.persist is not None and self.pool is not None
        while True:
            await asyncio.sleep(self.cfg.ops.ifconfig_pool_persist_seconds)
            self.persist.write(self.pool.pools[4])

    # -- the main loop -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._stop = loop.create_future()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_exit_signal, signum)
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(signum, self._on_restart_signal, signum)
        loop.add_signal_handler(signal.SIGUSR2, self._on_status_signal)
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.cfg.management is not None:
                management = Management(self.cfg.management, self.log, management_title())
                try:
                    await management.open()
                except ManagementError as exc:
                    raise StartupError(f"{self.cfg.source}:{self.cfg.line_of('management')}: "
                                       f"{exc}") from None
                self.management = management
                management.host = WorkersHost(self)
                if self.cfg.management.hold and not await hold_until_released(
                        management, self._stop):
                    return await self._stop
            if self.metrics_listen is not None:
                metrics = MetricsServer(self.metrics_listen, self.log)
                serve_workers(metrics, self)
                try:
                    await metrics.open()
                except MetricsError as exc:
                    raise StartupError(f"metrics-listen: {exc}") from None
                self.metrics = metrics
            try:
                self.prepare()
            except (ConfigError, OSError) as exc:
                raise StartupError(describe_error(exc)) from None
            for worker in self.workers:
                self._spawn(worker)
            # Nothing here needs root once the sockets, queues, map and workers exist: a
            # worker started again gets the same fds, and the map takes updates through
            # its fd (Linux 6.5+ checks privileges only when a map or program is created).
            if self.target.wanted:
                for line in drop(self.target):
                    self.log.info("%s", line)
            if self.status is not None:
                tasks.append(loop.create_task(self._status_loop()))
            if self.persist is not None:
                tasks.append(loop.create_task(self._persist_loop()))
            code = await self._stop
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._shutdown()
        return code

    def _on_exit_signal(self, signum: int) -> None:
        if self._stop is not None and not self._stop.done():
            self.log.info("%s[hard,] received, process exiting", signal.Signals(signum).name)
            self._stop.set_result(EXIT_OK)

    def _on_restart_signal(self, signum: int) -> None:
        # Stock: SIGHUP re-reads the config, SIGUSR1 restarts with the same one. Here the
        # workers are started again and read the config file; what the supervisor set up
        # (port, device, pool, steering) stays as it is until the server is started again.
        # A config a worker cannot start with ends the server, as stock exits on one.
        name = signal.Signals(signum).name
        self.log.info("%s[%s,] received, process restarting", name,
                      "hard" if signum == signal.SIGHUP else "soft")
        self._announced = False
        if self.management is not None:
            self.management.state("RECONNECTING", name)
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.restarting = True
                worker.ever_ready = False
                worker.proc.send_signal(signal.SIGTERM)

    def _on_status_signal(self) -> None:
        for line in render_status(self.snapshot(), 2).splitlines():
            self.log.info("%s", line)

    def _watch_exit(self, worker: _Worker) -> None:
        """Be told when the worker's process ends: its pidfd becomes readable (no polling,
        so an idle supervisor costs nothing)."""
        assert self.loop is not None and worker.proc is not None
        worker.pidfd = os.pidfd_open(worker.proc.pid)
        self.loop.add_reader(worker.pidfd, self._on_exit, worker)

    def _on_exit(self, worker: _Worker) -> None:
        assert self.loop is not None
        if worker.pidfd is not None:
            self.loop.remove_reader(worker.pidfd)
            os.close(worker.pidfd)
            worker.pidfd = None
        proc = worker.proc
        if proc is None or self.stopping:
            return
        code = proc.wait()  # it has exited: this reaps it at once
        self._exited(worker, code)

    def _exited(self, worker: _Worker, code: int) -> None:
        assert self._stop is not None and self.pool is not None
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self._close_channels(worker)
        self.pool.forget(worker.index)
        worker.proc = None
        if worker.restarting:
            worker.restarting = False
            self._spawn(worker)
            return
        if not worker.ever_ready:
            self.log.error("worker %d (pid %d) failed to start (%s); exiting", worker.index,
                           worker.pid, how)
            if not self._stop.done():
                self._stop.set_result(EXIT_FAILED)
            return
        now = time.monotonic()
        worker.exits.append(now)
        while worker.exits and now - worker.exits[0] > RESTART_PERIOD:
            worker.exits.popleft()
        if len(worker.exits) > RESTART_LIMIT:
            self.log.error("worker %d exited %d times in %.0f s (last: %s); exiting",
                           worker.index, len(worker.exits), RESTART_PERIOD, how)
            if not self._stop.done():
                self._stop.set_result(EXIT_FAILED)
            return
        level = logging.INFO if code == 0 else logging.ERROR
        self.log.log(level, "worker %d (pid %d) ended (%s); starting it again (its clients "
                     "reconnect)", worker.index, worker.pid, how)
        self._spawn(worker)

    async def _shutdown(self) -> None:
        self.stopping = True
        if self.status is not None and any(w.ready for w in self.workers):
            with contextlib.suppress(OSError):
                self._write_status()  # before the goodbye: it lists who was connected
        running = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for worker in running:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in running:
            assert worker.proc is not None
            while worker.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if worker.proc.poll() is None:
                self.log.warning("worker %d did not exit in %.0f s; killing it", worker.index,
                                 STOP_GRACE)
                worker.proc.kill()
                worker.proc.wait()
        if self.loop is not None:
            for worker in self.workers:
                self._close_channels(worker)
                if worker.pidfd is not None:
                    self.loop.remove_reader(worker.pidfd)
                    os.close(worker.pidfd)
                    worker.pidfd = None
        if self.persist is not None and self.pool is not None:
            try:
                self.persist.write(self.pool.pools[4])
            except OSError as exc:
                self.log.warning("ifconfig-pool-persist: cannot write %s: %s",
                                 self.persist.path, exc.strerror or exc)
        for sock in self.socks:
            sock.close()
        if self.steering is not None:
            self.steering.close()
        if self.sessions is not None:
            self.sessions.close()
        if self.device_env is not None:  # before the routes go, as Runtime._shutdown
            self.scripts.up_down("route-pre-down", {**self.device_env, "signal": "sigterm"})
        self.device.close()
        if self.device_env is not None:
            self.scripts.up_down("down", {**self.device_env, "signal": "sigterm"})
        if self.status is not None:
            self.status.close()
        if self.metrics is not None:
            await self.metrics.close()
            self.metrics = None
        if self.management is not None:
            self.management.state("EXITING", "SIGTERM")
            await self.management.close()
            self.management = None
        if self.loop is not None:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                           signal.SIGUSR2):
                self.loop.remove_signal_handler(signum)
