"""Logging for `tunnel server` / `tunnel client`: stdlib logging, shaped like OpenVPN's log.

OpenVPN users read and grep its log, so the lines keep its look: a local timestamp
("2026-11-24 16:28:51 message"), one event per line, and its well-known phrases. `verb` maps
to logging levels as OpenVPN's verbosity does in practice:

    verb 0     errors only (ERROR and up)
    verb 1-3   normal operation (INFO; warnings always)
    verb 4     plus the details OpenVPN shows at 4 (VERBOSE, between INFO and DEBUG)
    verb 5+    debugging (DEBUG)

`mute N` is honoured as in OpenVPN: after N consecutive messages of the same kind, further ones
are dropped until a different kind comes along, and the drop is then reported once.

`machine-readable-output` switches the prefix to stock's parsable one (error.c x_msg_va):
"<unix seconds>.<microseconds, 6 digits> <message flags in hex> message". The flags are
stock's M_* bits for the record's level (M_FATAL 0x10, M_NONFATAL 0x20, M_WARN 0x40, otherwise
the verbosity level minus one); stock's mute-category bits (the high byte) are not reproduced.

The log goes to stdout (as OpenVPN's does) or to the `log`/`log-append` file; stderr is kept
for the one-line fatal error the CLI prints, so a script can tell them apart.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = [
    "LOGGER_NAME", "VERBOSE", "get_mute", "get_verb", "level_for_verb", "set_mute", "set_verb",
    "setup_logging",
]

LOGGER_NAME = "tunnel"
VERBOSE = 15  # between DEBUG (10) and INFO (20): what OpenVPN prints at verb 4
logging.addLevelName(VERBOSE, "VERBOSE")

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # OpenVPN 2.6's timestamp


def level_for_verb(verb: int) -> int:
    if verb <= 0:
        return logging.ERROR
    if verb <= 3:
        return logging.INFO
    if verb == 4:
        return VERBOSE
    return logging.DEBUG


class _OpenVpnFormatter(logging.Formatter):
    """"2026-11-24 16:28:51 message", and never more than one line per record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt=_TIME_FORMAT)
        self.converter = time.localtime

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        # A peer's text (a control message, a common name) must not forge extra log lines.
        if record.exc_info is None and ("\n" in text or "\r" in text):
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        return text


def machine_flags(levelno: int) -> int:
    """Stock's message flags for a record of this level (error.h M_*, errlevel.h LOGLEV)."""
    if levelno >= logging.CRITICAL:
        return 0x10  # M_FATAL
    if levelno >= logging.ERROR:
        return 0x20  # M_NONFATAL
    if levelno >= logging.WARNING:
        return 0x40  # M_WARN
    if levelno >= logging.INFO:
        return 0  # M_INFO: LOGLEV(1, 0, 0)
    if levelno >= VERBOSE:
        return 3  # verb 4
    return 4  # verb 5 and up


class _MachineReadableFormatter(_OpenVpnFormatter):
    """machine-readable-output: "1796127168.170455 40 message"."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        message = line.split(" ", 2)[2] if line.count(" ") >= 2 else line  # drop date, time
        seconds = int(record.created)
        micros = int((record.created - seconds) * 1_000_000)
        return f"{seconds}.{micros:06d} {machine_flags(record.levelno):x} {message}"


class _MuteFilter(logging.Filter):
    """OpenVPN's `mute N`: at most N consecutive messages of one kind (same format string)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._kind: tuple[str, int] | None = None
        self._count = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (str(record.msg), record.levelno)
        if kind == self._kind:
            self._count += 1
            if self._count > self.limit:
                self._suppressed += 1
                return False
            return True
        if self._suppressed:
            # Same wording as OpenVPN, so existing log watchers recognise it.
            record.msg = f"[previous {self._suppressed} messages suppressed] {record.msg}"
        self._kind, self._count, self._suppressed = kind, 1, 0
        return True


def setup_logging(
    *,
    verb: int,
    mute: int = 0,
    log_file: Path | None = None,
    append: bool = False,
    stream: TextIO | None = None,
    machine_readable: bool = False,
) -> logging.Logger:
    """Configure the "tunnel" logger; raises OSError if the log file cannot be opened."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler
    if log_file is not None:
        # Opened now, before privileges are dropped, as OpenVPN does.
        handler = logging.FileHandler(log_file, mode="a" if append else "w", encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(_MachineReadableFormatter() if machine_readable
                         else _OpenVpnFormatter())
    if mute > 0:
        handler.addFilter(_MuteFilter(mute))
    logger.addHandler(handler)
    logger.setLevel(level_for_verb(verb))
    _current["verb"] = verb
    logger.propagate = False  # the root logger (pytest, libraries) must not print it twice
    return logger


# -- changed at run time (the management interface's `verb N` / `mute N`) ---------------------

_current = {"verb": 1}


def set_verb(verb: int) -> None:
    _current["verb"] = verb
    logging.getLogger(LOGGER_NAME).setLevel(level_for_verb(verb))


def get_verb() -> int:
    return _current["verb"]


def _mute_filters() -> list[_MuteFilter]:
    return [f for h in logging.getLogger(LOGGER_NAME).handlers for f in h.filters
            if isinstance(f, _MuteFilter)]


def get_mute() -> int:
    filters = _mute_filters()
    return filters[0].limit if filters else 0


def set_mute(mute: int) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        for f in [f for f in handler.filters if isinstance(f, _MuteFilter)]:
            handler.removeFilter(f)
        if mute > 0:
            handler.addFilter(_MuteFilter(mute))
