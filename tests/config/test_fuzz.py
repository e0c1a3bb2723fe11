"""Whatever the input, the parser either returns a TunnelConfig or raises a one-line ConfigError.

Three generators: arbitrary text; config-shaped text built from real option names and
argument values likely to reach deep into the handlers and checks (often on top of a valid
minimal config, so that validation itself is exercised); and arbitrary bytes through
load_config().
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.config.conftest import MINIMAL_CLIENT, MINIMAL_SERVER
from tunnel.config import SUPPORTED_OPTIONS, TunnelConfig, load_config, parse_config
from tunnel.config.checks import check_config
from tunnel.protocol.errors import ConfigError

_LOCATED = re.compile(r"fuzz\.conf:\d+: \S")

# Values that mean something to some option, plus lexer troublemakers.
_ARGUMENTS = [
    "0", "1", "2", "10", "60", "100", "1194", "1500", "65535", "65536", "-1", "99999999999999",
    "10.8.0.0", "10.8.0.1", "255.255.255.0", "255.255.255.248", "255.0.255.0", "0.0.0.0",
    "192.0.2.1", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/64",
    "fe80::1%eth0", "fd00::/64", "fd00::1/64", "fd00::2", "2001:db8::/32", "::/0", "example.com",
    "udp", "udp4", "udp6", "tcp", "tun", "tap", "tun0", "null", "subnet", "net30", "server",
    "client", "p2p", "nopool", "default", "vpn_gateway", "mtu", "fixed", "no", "yes", "none",
    "infinite", "or-highest", "1.2", "1.3", "name", "subject", "AES-256-GCM", "aes-128-gcm",
    "?BF-CBC", "AES-256-GCM:CHACHA20-POLY1305", "ca.crt", "client.key", "server.crt", ".",
    "/nonexistent", "opt", "FORWARD_COMPATIBLE", "fragment", "--verb",
    '"quoted value"', "'single'", '"unclosed', "back\\\\slash", "bad\\x", "#comment", ";c",
    '""', "a,b", "<ca>", "</ca>", "\\", "\x00", "\t", "\u00e9",
]  # fmt: skip

_NAMES = [*SUPPORTED_OPTIONS, "fragment", "--port", "<ca>", "</ca>", "<key>", "#", "setenv opt"]


@st.composite
def _config_lines(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(_NAMES))
        args = draw(st.lists(st.sampled_from(_ARGUMENTS), max_size=4))
        lines.append(" ".join([name, *args]))
        if draw(st.booleans()) and name.startswith("<") and not name.startswith("</"):
            lines.append(draw(st.sampled_from(["-----BEGIN CERTIFICATE-----", "x", ""])))
            lines.append(draw(st.sampled_from([f"</{name[1:]}", "</other>", ""])))
    prefix = draw(st.sampled_from(["", MINIMAL_CLIENT, MINIMAL_SERVER]))
    return prefix + "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, pems: dict[str, str]) -> Path:
    directory = tmp_path_factory.mktemp("fuzz")
    for name, text in pems.items():
        (directory / name).write_text(text)
    return directory


def _parse_or_config_error(text: str, base_dir: Path) -> None:
    try:
        cfg = parse_config(text, source="fuzz.conf", base_dir=base_dir)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert len(message.splitlines()) == 1, message
        assert _LOCATED.match(message), message
        return
    assert isinstance(cfg, TunnelConfig)
    assert cfg.role in ("server", "client")
    check_config(cfg)  # what the parser validated stays valid


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(text=st.text())
def test_random_text(base_dir: Path, text: str) -> None:
    _parse_or_config_error(text, base_dir)


@_SETTINGS
@given(text=_config_lines())
def test_config_shaped_text(base_dir: Path, text: str) -> None:
    _parse_or_config_error(text, base_dir)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_through_load_config(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "fuzz.conf"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(str(path)) and len(message.splitlines()) == 1, message
