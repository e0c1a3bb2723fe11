"""`Runtime`: the part of a running peer both roles share.

The event loop, the Driver, signals, the status file and an orderly shutdown. The role-specific
halves (`serve.py`, `connect.py`) subclass it, open the link and the device and react to the
protocol's events; `run.py` (the process's main) picks the half and restarts it on SIGHUP /
SIGUSR1. Nothing here imports those: they import this module.

Shutdown (SIGINT/SIGTERM): log OpenVPN's "SIGTERM[hard,] received, process exiting", tell the
peer(s) through `Driver.close_endpoint()` (explicit-exit-notify / RESTART), write the status
file one last time, close the socket, and put the device away (removed unless persist-tun).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import platform
import signal
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol, TypeVar

from tunnel import __version__
from tunnel.app.device import TunnelDevice
from tunnel.app.hooks import PeerRecorder
from tunnel.app.management import Management, ManagementHost
from tunnel.app.management.passwords import Credentials
from tunnel.app.privileges import Target, drop
from tunnel.app.pullfilter import make_push_filter
from tunnel.app.scripts import ScriptRunner
from tunnel.app.status import ArenaCounters, StatusSnapshot, StatusWriter, render_status
from tunnel.config import TunnelConfig
from tunnel.io.transport import Transport
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.events import Event
from tunnel.protocol.settings import SessionSettings

__all__ = [
    "EXIT_FAILED", "EXIT_OK", "HostFactory", "Runtime", "RuntimeHooks", "StartupError",
    "describe_error", "hold_until_released", "management_title", "version_line",
]

Role = Literal["server", "client"]
EXIT_OK = 0
EXIT_FAILED = 1
_T = TypeVar("_T")


async def _unless_stopped(
    wait: Coroutine[Any, Any, _T], stop: asyncio.Future[int],
) -> asyncio.Future[_T] | None:
    """Wait for the management client (`wait`) or a signal (`stop`), whichever comes first:
    `wait`'s finished future, or None when the signal came first (then `wait` is cancelled)."""
    task = asyncio.ensure_future(wait)
    waiting: list[asyncio.Future[Any]] = [task, stop]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task


async def hold_until_released(management: Management, stop: asyncio.Future[int]) -> bool:
    """management-hold (one process or the workers' supervisor): wait for `hold release`;
    False if a signal (`stop`) ended the wait first."""
    return await _unless_stopped(management.hold(), stop) is not None


class StartupError(Exception):
    """The tunnel could not start; `str()` is the one line to show the user."""


def _already_exiting(signum: int, frame: object) -> None:
    """A SIGINT/SIGTERM during the shutdown: ignored (see Runtime._shutdown)."""


def describe_error(exc: BaseException) -> str:
    """One line for an expected failure (OSError's "[Errno 13]" noise left out)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text = f"{text}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def version_line() -> str:
    return (
        f"OpenVPN-compatible tunnel {__version__} [OpenVPN 2.6 UDP wire protocol] "
        f"[Python {platform.python_version()}] [{ssl.OPENSSL_VERSION}]"
    )


def management_title() -> str:
    """What the management `version`/`help` commands call us. Tools such as openvpn-monitor
    read the word after "OpenVPN" as a semantic version, so it leads with the OpenVPN version
    whose protocol we speak, then says what we are."""
    return (
        f"OpenVPN 2.6.0 {platform.machine()}-pc-linux-gnu [tunnel {__version__}: "
        f"OpenVPN-compatible in Python {platform.python_version()}] [SSL ({ssl.OPENSSL_VERSION})] "
        "[AEAD]"
    )


class RuntimeHooks(ManagementHost, Protocol):
    """What the runtime tells the management interface's view of it (`management/
    runtime_host.py`, which imports the role halves and so is handed in, never imported)."""

    def started(self) -> None: ...

    def exiting(self, restart: str | None) -> None: ...

    def on_event(self, event: Event) -> None: ...


HostFactory = Callable[["Runtime", Management], RuntimeHooks]


class Runtime:
    """One running peer. Subclasses implement `prepare` and `on_event`."""

    role: Role

    def __init__(
        self, cfg: TunnelConfig, log: logging.Logger, target: Target,
        management: Management | None = None, host_factory: HostFactory | None = None,
    ) -> None:
        self.cfg = cfg
        self.management = management
        self.host_factory = host_factory  # builds mgmt_host once prepared (with management)
        self.mgmt_host: RuntimeHooks | None = None
        self.restart: str | None = None  # "SIGHUP" (re-read the config) / "SIGUSR1"
        self.event_hooks: list[Callable[[Event], None]] = []  # told every protocol event
        self.credentials: Credentials | None = None  # from management-query-passwords
        self.log = log
        self.target = target
        self.device = TunnelDevice(cfg, log, max_mtu=cfg.tun_mtu)
        self.scripts = ScriptRunner(cfg, log)  # hook scripts (issue 11 item 5)
        self.recorder = PeerRecorder(self.scripts, cfg.ca_pem or "")
        self.device_env: dict[str, str] | None = None  # set once `up` ran: `down` gets it too
        self.cleanups: list[Callable[[], None]] = []  # run at shutdown (routes outside the tun)
        self.sock: socket.socket | None = None
        self.driver: Transport | None = None
        self.status: StatusWriter | None = None
        self.privileges_dropped = False
        self.shutting_down = False  # set before the endpoint is closed on purpose
        self._stop: asyncio.Future[int] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- for subclasses ----------------------------------------------------------------------

    def prepare(self, loop: asyncio.AbstractEventLoop) -> Transport:
        """Open the link and the device, build the endpoint; return the (unstarted) driver."""
        raise NotImplementedError

    def started(self) -> None:
        """Called once the driver runs."""

    def status_snapshot(self, now: float) -> StatusSnapshot:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A background task of this runtime, cancelled at shutdown."""
        assert self.loop is not None
        self._tasks.append(self.loop.create_task(coro))

    def stop(self, code: int) -> None:
        """End the main loop with this exit code (the first request wins)."""
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(code)

    def drop_privileges(self) -> None:
        if self.privileges_dropped or not self.target.wanted:
            return
        for line in drop(self.target):
            self.log.info("%s", line)
        self.privileges_dropped = True

    # -- the main loop -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._stop = loop.create_future()
        try:
            self._install_signals(loop)
            self.status = self._open_status()
            if self.management is not None and not await hold_until_released(
                    self.management, self._stop):
                return EXIT_OK
            if not await self._query_credentials():
                return EXIT_OK
            try:
                driver = self.prepare(loop)
            except (ConfigError, OSError) as exc:
                raise StartupError(describe_error(exc)) from None
            self.driver = driver
            if self.management is not None:
                assert self.host_factory is not None, "a managed runtime needs host_factory"
                self.mgmt_host = self.host_factory(self, self.management)
                self.management.host = self.mgmt_host
            driver.start()
            try:
                self.started()
            except OSError as exc:
                raise StartupError(describe_error(exc)) from None
            if self.mgmt_host is not None:
                self.mgmt_host.started()
            if self.status is not None:
                self.spawn(self._status_loop())
            code = await self._stop
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._shutdown(loop)
        return code

    def credentials_wanted(self) -> str | None:
        """The credential type to ask the management client for before start ("Auth" for
        `auth-user-pass` without a file under `management-query-passwords`); None: none.
        The answer is in `self.credentials` when `prepare()` runs."""
        return None

    async def query_credentials_again(self) -> Credentials | None:
        """auth-retry interact: ask the management client again for what `credentials_wanted`
        names; None if a signal ended the wait or there is no one to ask."""
        _asked, credentials = await self._ask_management()
        return credentials

    async def _query_credentials(self) -> bool:
        """False if a signal ended the wait."""
        asked, credentials = await self._ask_management()
        if not asked:
            return True
        if credentials is None:
            return False
        self.credentials = credentials
        return True

    async def _ask_management(self) -> tuple[bool, Credentials | None]:
        """Ask the management client for what `credentials_wanted` names, until it answers or
        a signal stops us: (False, None) when there is no one to ask or nothing to ask for,
        (True, None) when a signal ended the wait, else (True, the answer)."""
        kind = self.credentials_wanted()
        m = self.management
        if kind is None or m is None or not m.options.query_passwords:
            return False, None
        assert self._stop is not None
        query = await _unless_stopped(m.passwords.query(kind), self._stop)
        return True, None if query is None else query.result()

    def management_event(self, event: Event) -> None:
        """Every protocol event, for the management interface's notifications."""
        if self.mgmt_host is not None:
            self.mgmt_host.on_event(event)
        for hook in self.event_hooks:
            hook(event)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # An exception that escaped a callback or task is a bug, but nothing that arrives from
        # the network may stop the tunnel: log it with its traceback (rate-limited), count it,
        # carry on. (The driver already catches its own callbacks' exceptions per packet.)
        exc = context.get("exception")
        if not isinstance(exc, Exception):
            exc = RuntimeError(str(context.get("message", "unhandled exception")))
        if self.driver is not None:
            self.driver.stats.errors += 1
            self.driver.faults.record(str(context.get("message", "a callback")), exc)
        else:
            self.log.error("internal error: %s", context.get("message", "unhandled exception"),
                           exc_info=(type(exc), exc, exc.__traceback__))

    def _open_status(self) -> StatusWriter | None:
        cfg = self.cfg
        if cfg.status_file is None:
            return None
        try:
            return StatusWriter(cfg.status_file, self.log)
        except OSError as exc:
            raise StartupError(
                f"{cfg.source}:{cfg.line_of('status')}: cannot open the status file "
                f"{cfg.status_file}: {exc.strerror or exc}"
            ) from None

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self._on_loop_error)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_exit_signal, signum)
        loop.add_signal_handler(signal.SIGUSR2, self._on_status_signal)
        loop.add_signal_handler(signal.SIGHUP, self._on_restart_signal, signal.SIGHUP)
        loop.add_signal_handler(signal.SIGUSR1, self._on_restart_signal, signal.SIGUSR1)

    def _on_exit_signal(self, signum: int) -> None:
        if self._stop is not None and not self._stop.done():
            self.log.info("%s[hard,] received, process exiting", signal.Signals(signum).name)
        self.stop(EXIT_OK)

    def _on_status_signal(self) -> None:
        # OpenVPN prints its status to the log on SIGUSR2.
        if self.loop is None:
            return
        for line in render_status(self.status_snapshot(self.loop.time()), 2).splitlines():
            self.log.info("%s", line)

    def _on_restart_signal(self, signum: int) -> None:
        # Stock: SIGHUP re-reads the config and restarts, SIGUSR1 restarts with the same one.
        if self._stop is None or self._stop.done():
            return
        name = signal.Signals(signum).name
        self.log.info("%s[%s,] received, process restarting", name,
                      "hard" if signum == signal.SIGHUP else "soft")
        self.restart = name
        self.stop(EXIT_OK)

    async def _status_loop(self) -> None:
        assert self.loop is not None
        while True:
            self._write_status()
            await asyncio.sleep(self.cfg.status_interval)

    def _write_status(self) -> None:
        if self.status is None or self.loop is None:
            return
        snapshot = self.status_snapshot(self.loop.time())
        self.status.write(render_status(snapshot, self.cfg.status_version))

    def arena_counters(self) -> ArenaCounters:
        assert self.driver is not None
        arena = self.driver.arena
        return ArenaCounters(
            arena.iterations, arena.entries_freed, arena.bytes_freed, arena.detached
        )

    def wall(self, loop_time: float) -> float:
        """A loop (monotonic) timestamp as wall-clock time."""
        assert self.loop is not None
        return time.time() - (self.loop.time() - loop_time)

    def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP,
                       signal.SIGUSR1):
            loop.remove_signal_handler(signum)
        # Removing the loop's handler restores the default action, so a second SIGTERM now
        # would kill us before the peer is told we leave. That second one is ordinary: systemd
        # and `kill -- -PGID` signal every process of the group, and a worker's supervisor
        # signals it again. We are exiting already: it changes nothing. (A Python handler,
        # not SIG_IGN, so the down scripts started from here get the default back at exec.)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _already_exiting)
        driver = self.driver
        self.shutting_down = True
        if self.mgmt_host is not None:
            self.mgmt_host.exiting(self.restart)
        if driver is not None:
            # Written before the goodbye, so the last status still lists who was connected.
            self._write_status()
            try:
                driver.close_endpoint()  # explicit-exit-notify / RESTART to clients, flushed
            except Exception:  # the exit must go on: socket and device still need closing
                self.log.exception("while telling the peer we exit")
            driver.stop()
        if self.sock is not None:
            self.sock.close()
        self._run_route_pre_down()  # before any route goes (stock's do_close_tun)
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception:  # the exit must go on
                self.log.exception("while cleaning up")
        if self.cfg.ops.down_pre:
            self._run_down()
        self.device.close(keep=self._keeps_device())
        if not self.cfg.ops.down_pre:
            self._run_down()
        if self.status is not None:
            self.status.close()

    def with_peer_checks(self, settings: SessionSettings) -> SessionSettings:
        """The session settings with the script peer check (tls-verify, script variables) and,
        on a client, pull-filter."""
        if self.cfg.ops.pull_filters and self.cfg.role == "client":
            settings.push_filter = make_push_filter(self.cfg.ops.pull_filters, self.log)
        if not self.cfg.ops.scripts:
            return settings
        tls = settings.tls_settings
        settings.tls_settings = dataclasses.replace(
            tls, peer_checks=(*tls.peer_checks, self.recorder))
        return settings

    def run_up(self, env: dict[str, str]) -> bool:
        """`up` with the device's variables; False if it failed (stock then exits)."""
        self.device_env = env
        return self.scripts.up_down("up", env) is not False

    def _keeps_device(self) -> bool:
        """Only a SIGUSR1 restart keeps the device under persist-tun (stock's do_close_tun);
        SIGHUP and the exit close it, run down and remove what was configured."""
        return self.restart == "SIGUSR1" and self.cfg.persist_tun

    def _run_route_pre_down(self) -> None:
        if self.device_env is None or self._keeps_device():
            return
        env = {**self.device_env,
               "signal": "sigterm" if self.restart is None else self.restart.lower()}
        self.scripts.up_down("route-pre-down", env)

    def _run_down(self) -> None:
        if self.device_env is None or self._keeps_device():
            return
        env = {**self.device_env,
               "signal": "sigterm" if self.restart is None else self.restart.lower()}
        self.scripts.up_down("down", env)
