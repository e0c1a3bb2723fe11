"""Process options: `daemon`, `writepid`, `syslog` (OpenVPN 2.6 meaning).

* `daemon [NAME]`: after the config is read, fork; the parent exits 0 and the child goes on in
  a new session with stdin/stdout/stderr on /dev/null (stock's daemon(3) call). Without `log`
  or `log-append` the log then goes to syslog as NAME, as stock does. Our paths are absolute
  by then (the parser resolved them), so unlike stock we never need to stay in the directory.
* `syslog [NAME]`: log to the local syslog socket as NAME (facility daemon) instead of stdout.
  A `log`/`log-append` file wins over both, as in stock.
* `writepid FILE`: our pid, written once we are the process that will run (after the fork)
  and before privileges are dropped.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from tunnel.config import TunnelConfig

__all__ = ["become_daemon", "use_syslog", "write_pid"]

_SYSLOG_SOCKET = "/dev/log"


def become_daemon() -> None:
    """Fork into the background (the parent process exits 0 here)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)  # the parent: nothing else of ours may run (no atexit, no buffers)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


class _SyslogFormatter(logging.Formatter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.tag = f"{name}[{os.getpid()}]: "

    def format(self, record: logging.LogRecord) -> str:
        return self.tag + record.getMessage()


def use_syslog(logger: logging.Logger, name: str) -> bool:
    """Send `logger` to syslog as `name`; False (logger unchanged) without a syslog socket."""
    try:
        handler = logging.handlers.SysLogHandler(
            address=_SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    except OSError:
        return False
    handler.setFormatter(_SyslogFormatter(name))
    for old in list(logger.handlers):
        for flt in old.filters:  # keep `mute`
            handler.addFilter(flt)
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    return True


def write_pid(path: Path) -> None:
    path.write_text(f"{os.getpid()}\n")


def wants_syslog(cfg: TunnelConfig) -> str | None:
    """The syslog name to log under, or None (a log file, or neither option)."""
    if cfg.log_file is not None:
        return None
    return cfg.ops.syslog or cfg.ops.daemon
