"""Fixtures for the config tests: a real throwaway PKI on disk and a parse helper."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tunnel.config import TunnelConfig, parse_config
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.errors import ConfigError

PEM_NAMES = ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")

# The certificate/key lines every valid test config needs, per role.
SERVER_TLS = "ca ca.crt\ncert server.crt\nkey server.key\ndh none\n"
CLIENT_TLS = "ca ca.crt\ncert client.crt\nkey client.key\n"
MINIMAL_SERVER = "dev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\n" + SERVER_TLS
MINIMAL_CLIENT = "client\ndev tun\nremote 192.0.2.1 1194\n" + CLIENT_TLS


@pytest.fixture(scope="session")
def pems() -> dict[str, str]:
    files = generate_pki_in_memory()
    return {name: files[name].decode() for name in PEM_NAMES}


@pytest.fixture
def pki_dir(tmp_path: Path, pems: dict[str, str]) -> Path:
    """A directory holding ca.crt, server.crt/key and client.crt/key."""
    for name, text in pems.items():
        (tmp_path / name).write_text(text)
    return tmp_path


Parse = Callable[[str], TunnelConfig]


@pytest.fixture
def parse(pki_dir: Path) -> Parse:
    """Parse text as 'test.conf' whose relative file names resolve into pki_dir."""

    def run(text: str) -> TunnelConfig:
        return parse_config(text, source="test.conf", base_dir=pki_dir)

    return run


def assert_config_error(error: ConfigError, line: int, *fragments: str) -> None:
    """One line, located at test.conf:<line>, mentioning every fragment."""
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    match = re.match(r"test\.conf:(\d+): ", message)
    assert match is not None, message
    assert int(match.group(1)) == line, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


ParseError = Callable[..., ConfigError]


@pytest.fixture
def parse_error(parse: Parse) -> ParseError:
    """Parse text that must fail; check the error's line and fragments; return it."""

    def run(text: str, line: int, *fragments: str) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            parse(text)
        assert_config_error(info.value, line, *fragments)
        return info.value

    return run
