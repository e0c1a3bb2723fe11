"""Bounds and error texts of issue 8: option line length as stock, push bounded when the file
is read, oversized files located, PEM/key problems as FILE:LINE: option: ours, never a repr."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.config.conftest import (
    CLIENT_TLS,
    MINIMAL_SERVER,
    SERVER_TLS,
    Parse,
    ParseError,
    assert_config_error,
)
from tests.tools import which
from tunnel.app.build import build_session_settings
from tunnel.config import load_config
from tunnel.protocol.errors import ConfigError

S = MINIMAL_SERVER
S_LINES = S.count("\n")


def _setenv_line(total_with_newline: int) -> str:
    """A harmless line of exactly `total_with_newline` bytes, newline included."""
    head = "setenv A "
    return head + "x" * (total_with_newline - 1 - len(head)) + "\n"


@pytest.mark.parametrize("size", [200, 255])
def test_a_line_below_256_bytes_is_accepted(parse: Parse, size: int) -> None:
    parse(S + _setenv_line(size))


@pytest.mark.parametrize("size", [256, 257, 300, 4096])
def test_a_line_of_256_bytes_or_more_is_refused_as_stock(
    parse_error: ParseError, size: int
) -> None:
    parse_error(S + _setenv_line(size), S_LINES + 1, "option 'setenv'",
                "maximum option line length (256) exceeded", f"{size} bytes")


def test_a_long_comment_line_is_refused_too(parse_error: ParseError) -> None:
    parse_error("# " + "c" * 300 + "\n" + S, 1, "a comment line", "(256)")


def test_long_lines_inside_an_inline_block_are_fine(parse: Parse, pems: dict[str, str]) -> None:
    # read_inline_file() reads block lines in pieces: stock accepts them, so must we (here
    # the long text line `openssl x509 -text` style tools put before the PEM).
    subject = "subject=" + "/OU=x" * 80 + "\n"
    parse(S.replace("ca ca.crt\n", "<ca>\n" + subject + pems["ca.crt"] + "</ca>\n"))


def test_a_2_megabyte_push_line_is_refused_when_the_file_is_read(
    parse_error: ParseError,
) -> None:
    line = 'push "route 10.0.0.0 255.0.0.0 ' + "x" * (2 << 20) + '"\n'
    parse_error(S + line, S_LINES + 1, "option 'push'", "maximum option line length (256)")


def test_a_huge_file_is_located_at_the_line_where_it_crosses_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "huge-file.conf"
    big.write_text(S + "# padding\n" * 500_000)  # 5 MB of short lines
    with pytest.raises(ConfigError) as info:
        load_config(big)
    message = str(info.value)
    assert not message.startswith(f"{big}:0:"), message
    line = int(message[len(str(big)) + 1 :].split(":", 1)[0])
    assert line > 400_000, message
    assert "larger than" in message


def test_a_huge_single_line_is_reported_as_the_long_line_it_is(tmp_path: Path) -> None:
    big = tmp_path / "huge-line.conf"
    big.write_text("dev tun\npush \"" + "y" * (5 << 20) + "\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(big)
    assert str(info.value).startswith(f"{big}:2: option 'push': maximum option line length")


@pytest.mark.openvpn
@pytest.mark.parametrize("size", [254, 255, 256, 257])
def test_stock_draws_the_line_at_the_same_byte(tmp_path: Path, size: int) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(_setenv_line(size) + "verb 3\n")
    openvpn = which("openvpn")  # in /usr/sbin, which a user's PATH may lack
    assert openvpn is not None
    stock = subprocess.run([openvpn, "--config", str(conf)], capture_output=True, text=True,
                           timeout=10)
    stock_refuses = "Maximum option line length (256) exceeded" in stock.stdout + stock.stderr
    try:
        load_config(conf)
        ours_refuses = False
    except ConfigError as exc:
        ours_refuses = "maximum option line length" in str(exc)
    assert ours_refuses == stock_refuses == (size >= 256)


# -- PEM and key problems: located, in our words ------------------------------------------------


def _settings_error(parse: Parse, text: str) -> str:
    cfg = parse(text)
    with pytest.raises(ConfigError) as info:
        build_session_settings(cfg, ipv6_link=False)
    return str(info.value)


def test_a_cut_ca_certificate_is_located_and_in_our_words(
    parse: Parse, pems: dict[str, str]
) -> None:
    lines = pems["ca.crt"].splitlines(keepends=True)
    cut = "".join(lines[:3] + lines[-1:])  # BEGIN, two base64 lines, END
    text = "dev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\n<ca>\n" + cut + "</ca>\n"
    text += SERVER_TLS.replace("ca ca.crt\n", "")
    message = _settings_error(parse, text)
    assert_config_error(ConfigError(message), 4, "ca: ", "not a valid X.509 certificate")
    for leak in ("ParseError", "asn1", "ShortData", "{"):
        assert leak not in message, message


def test_a_key_that_does_not_match_its_certificate_is_located(parse: Parse) -> None:
    text = "client\ndev tun\nremote 192.0.2.1 1194\n" + CLIENT_TLS.replace(
        "key client.key", "key server.key")
    message = _settings_error(parse, text)
    assert_config_error(ConfigError(message), 6, "key: ", "does not belong to the certificate")
