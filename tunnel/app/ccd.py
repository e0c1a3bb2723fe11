"""`client-config-dir` and `ifconfig-pool-persist`, as stock OpenVPN 2.6 reads and writes them.

client-config-dir: once a client is authenticated, the file named after its common name (else
`DEFAULT`) is read, every time it connects, so edits apply to the next connection. The
directives a ccd file may hold here: `push "..."`, `push-reset`, `ifconfig-push ADDR MASK`,
`iroute NET [MASK]`, `disable`. Anything else refuses the client with a log line naming the
file and line (failing closed: a ccd file is where `disable` and per-client restrictions live).
With `ccd-exclusive` a client without a file is refused. A common name that is not a plain file
name (empty, '.', '..', a '/') never reaches the file system: such a client gets the DEFAULT
file, or is refused under ccd-exclusive.

ifconfig-pool-persist FILE [SECONDS]: lines `CN,IPv4,IPv6` (pool.c: ifconfig_pool_list());
read at start, written every SECONDS (default 600; 0 = never written) and at exit.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from tunnel.config.lexer import lex_config
from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.clientconfig import ClientConfig
from tunnel.protocol.errors import ConfigError

__all__ = ["CcdReader", "PoolPersistFile", "load_pool_persist", "parse_client_config"]

_MAX_CCD_BYTES = 1 << 20


class CcdReader:
    """ServerSettings.client_config for a client-config-dir."""

    def __init__(self, directory: Path, exclusive: bool, log: logging.Logger) -> None:
        self.directory = directory
        self.exclusive = exclusive
        self.log = log

    def __call__(self, common_name: str | None) -> ClientConfig | None:
        """The client's config by common name; None = refuse the client."""
        path = self._file_for(common_name)
        if path is None:
            if self.exclusive:
                self.log.warning("client-config-dir: no file for CN %r and ccd-exclusive is set:"
                                 " refusing the client", common_name)
                return None
            return ClientConfig()
        try:
            return self._parse(path)
        except (OSError, UnicodeDecodeError, ConfigError, ValueError) as exc:
            self.log.warning("client-config-dir: %s: %s: refusing the client", path, exc)
            return None

    def _file_for(self, common_name: str | None) -> Path | None:
        names = []
        if common_name and common_name not in (".", "..") and "/" not in common_name \
                and "\0" not in common_name:
            names.append(common_name)
        names.append("DEFAULT")
        for name in names:
            path = self.directory / name
            if path.is_file():
                return path
        return None

    def _parse(self, path: Path) -> ClientConfig:
        with path.open("rb") as stream:
            data = stream.read(_MAX_CCD_BYTES + 1)
        if len(data) > _MAX_CCD_BYTES:
            raise ValueError(f"larger than {_MAX_CCD_BYTES} bytes")
        return parse_client_config(data.decode("utf-8"), str(path))


def parse_client_config(text: str, source: str, base: ClientConfig | None = None
                        ) -> ClientConfig:
    """ccd directives (a ccd file, a client-connect script's output or a management
    `client-auth` body) on top of `base`; ValueError or ConfigError naming the line."""
    base = base or ClientConfig()
    disable, push_reset = base.disable, base.push_reset
    push: list[str] = list(base.push)
    ifconfig_push: ipaddress.IPv4Address | None = base.ifconfig_push
    iroutes: list[ipaddress.IPv4Network] = list(base.iroutes)
    for d in lex_config(text, source=source):
        where = f"line {d.line}: {d.name}"
        if d.name == "disable" and not d.args:
            disable = True
        elif d.name == "push-reset" and not d.args:
            push_reset = True
        elif d.name == "push" and len(d.args) == 1 and d.args[0].strip() \
                and "," not in d.args[0]:
            push.append(d.args[0])
        elif d.name == "ifconfig-push" and len(d.args) in (2, 3):
            ifconfig_push = ipaddress.IPv4Address(d.args[0])
            ipaddress.IPv4Address(d.args[1])  # netmask (subnet) or remote (net30): checked
        elif d.name == "iroute" and len(d.args) in (1, 2):
            mask = d.args[1] if len(d.args) == 2 else "255.255.255.255"
            iroutes.append(ipaddress.IPv4Network(f"{d.args[0]}/{mask}"))
        elif d.name == "iroute-ipv6" and len(d.args) == 1:
            raise ValueError(f"{where}: IPv6 iroutes are not supported")
        else:
            raise ValueError(f"{where}: not supported in a client-config-dir file")
    return ClientConfig(disable, push_reset, tuple(push), ifconfig_push, tuple(iroutes))


def load_pool_persist(path: Path, pool: AddressPool[ipaddress.IPv4Address],
                      log: logging.Logger) -> int:
    """Reserve the persisted addresses in `pool`; the number taken. A missing file is fine."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("ifconfig-pool-persist: cannot read %s: %s", path, exc.strerror or exc)
        return 0
    taken = 0
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.strip().split(",")
        if len(fields) < 2 or not fields[0] or not fields[1]:
            continue
        try:
            address = ipaddress.IPv4Address(fields[1])
        except ValueError:
            log.warning("ifconfig-pool-persist: %s:%d: bad address %r", path, number, fields[1])
            continue
        if pool.reserve(fields[0], address):
            taken += 1
        else:
            log.info("ifconfig-pool-persist: %s:%d: %s for %r is not free in the pool, ignored",
                     path, number, address, fields[0])
    return taken


class PoolPersistFile:
    """The ifconfig-pool-persist file, opened once before privileges are dropped and then
    rewritten in place, as stock does (status_open() at start, status_reset() per write)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream = path.open("a+", encoding="utf-8")

    def write(self, pool: AddressPool[ipaddress.IPv4Address]) -> None:
        lines = "".join(f"{cn},{address},\n" for cn, address in pool.assignments().items())
        self._stream.seek(0)
        self._stream.truncate()
        self._stream.write(lines)
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()
