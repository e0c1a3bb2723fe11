"""The asyncio main of `tunnel server` and `tunnel client`: config in, tunnel up, clean exit.

    exit = run_tunnel("server.conf", "server")   # raises StartupError with a one-line reason

It loads the config, sets up logging and the process options, opens the management interface
and the metrics endpoint once, then runs one role half (`serve.ServerRuntime` /
`connect.ClientRuntime`, both `runtime.Runtime`s) after another while SIGHUP / SIGUSR1 ask
for a restart.

Shutdown (SIGINT/SIGTERM): log OpenVPN's "SIGTERM[hard,] received, process exiting", tell the
peer(s) through `Driver.close_endpoint()` (explicit-exit-notify / RESTART), write the status
file one last time, close the socket, and put the device away (removed unless persist-tun).
"""

from __future__ import annotations

import asyncio
import logging

from tunnel.app.build import check_supported
from tunnel.app.connect import ClientRuntime
from tunnel.app.effects import unapplied_options
from tunnel.app.logsetup import setup_logging
from tunnel.app.management import Management, ManagementError
from tunnel.app.management.runtime_host import host_for
from tunnel.app.metrics import MetricsError, MetricsServer
from tunnel.app.privileges import PrivilegeError, Target, lookup
from tunnel.app.process import become_daemon, use_syslog, wants_syslog, write_pid
from tunnel.app.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    Role,
    Runtime,
    StartupError,
    describe_error,
    management_title,
    version_line,
)
from tunnel.app.serve import ServerRuntime
from tunnel.app.workers import Supervisor, resolve_workers
from tunnel.config import TunnelConfig, load_config
from tunnel.io.loop import new_event_loop
from tunnel.protocol.errors import ConfigError

__all__ = ["EXIT_FAILED", "EXIT_OK", "StartupError", "run_tunnel"]


def _log_config(cfg: TunnelConfig, log: logging.Logger) -> None:
    for item in cfg.ignored:
        log.warning("%s", item)
    noted = {note.split(": ", 1)[0] for note in cfg.notes}
    for note in cfg.notes:
        log.info("%s", note)
    for option, line, reason in unapplied_options(cfg):
        if f"{cfg.source}:{line}" in noted:
            continue  # the parser's note already says what happens to it
        log.info("%s:%d: option '%s' accepted, no effect: %s", cfg.source, line, option, reason)


def _load(config_path: str, role: Role) -> TunnelConfig:
    try:
        cfg = load_config(config_path)
        check_supported(cfg)
    except ConfigError as exc:
        raise StartupError(describe_error(exc)) from None
    if cfg.role != role:
        raise StartupError(
            f"{cfg.source}: this is a {cfg.role} configuration; run it with "
            f"'tunnel {cfg.role} --config {config_path}'"
        )
    return cfg


def _new_runtime(cfg: TunnelConfig, log: logging.Logger, target: Target,
                 management: Management | None) -> Runtime:
    if cfg.role == "server":
        return ServerRuntime(cfg, log, target, management, host_factory=host_for)
    return ClientRuntime(cfg, log, target, management, host_factory=host_for)


async def _run_restarting(config_path: str, role: Role, cfg: TunnelConfig,
                          log: logging.Logger, target: Target,
                          metrics_listen: tuple[str, int] | None = None) -> int:
    """One runtime after another while SIGHUP/SIGUSR1 ask for a restart.

    The management interface is opened once, before anything else (a held start waits on
    it), and stays up across restarts, as stock's does.
    """
    management: Management | None = None
    if cfg.management is not None:
        try:
            management = Management(cfg.management, log, management_title())
            await management.open()
        except ManagementError as exc:
            raise StartupError(f"{cfg.source}:{cfg.line_of('management')}: {exc}") from None
    metrics: MetricsServer | None = None
    listen = metrics_listen or cfg.metrics_listen
    try:
        if listen is not None:
            metrics = MetricsServer(listen, log)
            try:
                await metrics.open()
            except MetricsError as exc:
                where = "--metrics-listen" if metrics_listen else \
                    f"{cfg.source}:{cfg.line_of('metrics-listen')}:"
                raise StartupError(f"{where} {exc}") from None
        while True:
            runtime = _new_runtime(cfg, log, target, management)
            if metrics is not None:
                metrics.attach(runtime)
            code = await runtime.run()
            if runtime.restart is None:
                return code
            if runtime.restart == "SIGHUP":
                try:
                    cfg = _load(config_path, role)
                except StartupError as exc:
                    log.error("SIGHUP: the configuration cannot be used: %s", exc)
                    log.error("Exiting due to fatal error")
                    return EXIT_FAILED
            log.info("Restart pause, 1 second(s)")
            await asyncio.sleep(1.0)
    finally:
        if metrics is not None:
            await metrics.close()
        if management is not None:
            await management.close()


def _process_options(cfg: TunnelConfig, log: logging.Logger) -> None:
    """daemon, syslog, writepid (process.py), once the config and the log are set up."""
    if cfg.ops.daemon is not None:
        become_daemon()
    name = wants_syslog(cfg)
    if name is not None and not use_syslog(log, name):
        log.warning("%s:%d: no syslog socket (/dev/log): logging to stdout instead",
                    cfg.source, cfg.line_of("syslog" if cfg.ops.syslog else "daemon"))
    if cfg.ops.writepid is not None:
        try:
            write_pid(cfg.ops.writepid)
        except OSError as exc:
            raise StartupError(
                f"{cfg.source}:{cfg.line_of('writepid')}: cannot write the pid file "
                f"{cfg.ops.writepid}: {exc.strerror or exc}"
            ) from None


def run_tunnel(config_path: str, role: Role,
               metrics_listen: tuple[str, int] | None = None,
               workers: int | None = None) -> int:
    """Run until a signal (exit 0) or a fatal condition (exit 1). StartupError: did not start.

    A server runs `workers` worker processes (None: one per core where the config allows
    it; tunnel/app/workers.py)."""
    cfg = _load(config_path, role)
    try:
        target = lookup(cfg.user, cfg.group)
    except PrivilegeError as exc:
        raise StartupError(f"{cfg.source}:{cfg.line_of(exc.option)}: {exc}") from None
    try:
        log = setup_logging(
            verb=cfg.verb, mute=cfg.mute, log_file=cfg.log_file, append=cfg.log_append,
            machine_readable=cfg.ops.machine_readable_output,
        )
    except OSError as exc:
        option = "log-append" if cfg.log_append else "log"
        raise StartupError(
            f"{cfg.source}:{cfg.line_of(option)}: cannot open the log file {cfg.log_file}: "
            f"{exc.strerror or exc}"
        ) from None
    _process_options(cfg, log)
    log.info("%s", version_line())
    _log_config(cfg, log)
    count = 1
    if role == "server":
        count = resolve_workers(cfg, workers, log, metrics=metrics_listen is not None)
    loop = new_event_loop()
    try:
        if count > 1:
            return loop.run_until_complete(
                Supervisor(config_path, cfg, count, log, metrics_listen).run())
        return loop.run_until_complete(
            _run_restarting(config_path, role, cfg, log, target, metrics_listen))
    except StartupError as exc:
        log.error("%s", exc)
        log.error("Exiting due to fatal error")
        raise
    finally:
        loop.close()
