"""How problems in a config file are reported: one line, ``file:line: message``.

OpenVPN prints ``Options error: ... in client.ovpn:12``; we put the location first, the way
compilers do, so that editors and ``grep`` can jump to it. Every user-supplied string goes
through :func:`quote`, and the whole message through :func:`_one_line`, so a value holding a
newline or a control character can never split a message over several log lines.
"""

from __future__ import annotations

from tunnel.protocol.errors import ConfigError

__all__ = ["OptionProblem", "config_error", "quote"]


class OptionProblem(Exception):
    """One option's arguments are unusable.

    Raised by the option handlers, which know the option but not where it came from; the parser
    turns it into a :class:`ConfigError` carrying the file and line. The text must already name
    the option (``option 'port' expects ...``).
    """


def quote(value: str) -> str:
    """A user-supplied value as it appears in a message: quoted, control characters escaped."""
    return repr(value)


def _one_line(text: str) -> str:
    # repr() escapes exactly the characters str.isprintable() rejects, which includes every
    # character str.splitlines() would break on.
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def config_error(source: str, line: int, text: str) -> ConfigError:
    """The ConfigError for a problem at ``source:line``."""
    return ConfigError(f"{_one_line(source)}:{line}: {_one_line(text)}")
