"""The client's username and password for `auth-user-pass` (issue 11 item 1).

From the file or inline block the option names (first line the username, second the
password, as stock's `get_user_pass_cr()` reads them; a trailing CR is dropped), and what is
missing from the terminal when there is one (`getpass`, no echo). Without a terminal a missing
part is a clear error at start. Neither value is ever logged; only the file name is.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from tunnel.config import TunnelConfig
from tunnel.protocol.client import AuthTokenStore
from tunnel.protocol.errors import ConfigError

__all__ = ["AUTH_TOKEN", "Credentials", "load_credentials"]

# The auth-token a server pushed, for the whole process as stock keeps it (a static in ssl.c):
# SIGUSR1/SIGHUP restarts build new Clients, and they all send it instead of the password
# until a server answers AUTH_FAILED to it.
AUTH_TOKEN = AuthTokenStore()

_MAX_FILE = 64 * 1024
_USER_PASS_LEN = 4096  # stock's USER_PASS_LEN with 2.6's larger limit for tokens


class Credentials:
    """A username and password; the repr never shows the password."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _ask(prompt: str, *, secret: bool) -> str:
    if not sys.stdin.isatty():
        raise ConfigError(f"ERROR: could not read {prompt} from stdin (no terminal to ask on)")
    if secret:
        return getpass.getpass(f"{prompt}: ")
    sys.stderr.write(f"{prompt}: ")
    sys.stderr.flush()
    return sys.stdin.readline().rstrip("\r\n")


def load_credentials(cfg: TunnelConfig) -> Credentials | None:
    """The credentials `auth-user-pass` names, or None when the option is absent."""
    source = cfg.auth_user_pass
    if source is None:
        return None
    where = f"{cfg.source}:{cfg.line_of('auth-user-pass')}"
    lines: list[str] = []
    if source == "inline":
        lines = _lines(cfg.auth_user_pass_inline or "")
    elif source:
        path = Path(source)
        try:
            with path.open("rb") as stream:
                data = stream.read(_MAX_FILE + 1)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the auth-user-pass file {path}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        try:
            lines = _lines(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: the auth-user-pass file {path} is not text") from None
    username = lines[0] if lines else ""
    password = lines[1] if len(lines) > 1 else ""
    if not username:
        username = _ask("Enter Auth Username", secret=False)
    if not password and (not lines or len(lines) < 2 or not source):
        password = _ask("Enter Auth Password", secret=True)
    if not username:
        raise ConfigError(f"{where}: auth-user-pass: the username is empty")
    if len(username) >= _USER_PASS_LEN or len(password) >= _USER_PASS_LEN:
        raise ConfigError(f"{where}: auth-user-pass: username or password too long")
    return Credentials(username, password)
