"""tls-auth / tls-crypt / key-direction / auth in configs, as the installers write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.conftest import MINIMAL_CLIENT, MINIMAL_SERVER, Parse, ParseError
from tests.protocol import wrap_vectors as v
from tunnel.app.build import build_control_wrap
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.wrap import TlsAuthWrap, TlsCryptWrap, parse_static_key

KEY_TEXT = v.TLS_AUTH_SHA1_KEY_FILE
KEY = parse_static_key(KEY_TEXT)


@pytest.fixture
def key_file(pki_dir: Path) -> Path:
    path = pki_dir / "ta.key"
    path.write_text(KEY_TEXT)
    return path


def test_tls_auth_file_and_direction(parse: Parse, key_file: Path) -> None:
    cfg = parse(MINIMAL_SERVER + "tls-auth ta.key 0\n")
    assert (cfg.control_wrap, cfg.control_key, cfg.tls_auth_direction) == ("tls-auth", KEY, 0)
    assert cfg.control_key_source == str(key_file)
    wrap = build_control_wrap(cfg)
    assert isinstance(wrap, TlsAuthWrap) and wrap.digest == "SHA1"


def test_inline_block_with_key_direction_and_auth(parse: Parse) -> None:
    """PiVPN / Nyr / angristan style: key-direction + <tls-auth> + auth SHA256/SHA512."""
    cfg = parse(MINIMAL_CLIENT + "auth SHA512\nkey-direction 1\n<tls-auth>\n" + KEY_TEXT
                + "</tls-auth>\n")
    assert (cfg.control_key, cfg.tls_auth_direction, cfg.key_direction) == (KEY, None, 1)
    wrap = build_control_wrap(cfg)
    assert isinstance(wrap, TlsAuthWrap) and wrap.digest == "SHA512"
    # It verifies what a stock server in direction 0 sends: the direction came through.
    server = TlsAuthWrap(KEY, 0)
    assert wrap.overhead == server.overhead + 44


def test_tls_auth_inline_marker_takes_the_block(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "tls-auth [inline] 1\n<tls-auth>\n" + KEY_TEXT + "</tls-auth>\n")
    assert (cfg.control_key, cfg.tls_auth_direction) == (KEY, 1)


def test_tls_auth_inline_marker_without_block(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "tls-auth [inline] 1\n")
    with pytest.raises(ConfigError, match=r"test.conf:7: .*needs an inline <tls-auth> block"):
        build_control_wrap(cfg)


def test_tls_crypt_roles(parse: Parse, key_file: Path) -> None:
    server = build_control_wrap(parse(MINIMAL_SERVER + "tls-crypt ta.key\n"))
    inline = "<tls-crypt>\n" + KEY_TEXT + "</tls-crypt>\n"
    client = build_control_wrap(parse(MINIMAL_CLIENT + inline))
    assert isinstance(server, TlsCryptWrap) and isinstance(client, TlsCryptWrap)


def test_bad_auth_digest(parse_error: ParseError, key_file: Path) -> None:
    # `auth` is checked when it is read (it also keys a CBC data channel's HMAC).
    parse_error(MINIMAL_CLIENT + "auth MD4\ntls-auth ta.key 1\n", 7,
                "option 'auth': digest 'MD4' is not supported")


def test_two_wraps_refused(parse_error: ParseError, key_file: Path) -> None:
    parse_error(MINIMAL_CLIENT + "tls-auth ta.key 1\ntls-crypt ta.key\n", 8,
                "option 'tls-crypt' cannot be combined with 'tls-auth'")


@pytest.mark.parametrize(("body", "key_line", "words"), [
    ("\n".join(KEY_TEXT.splitlines()[:9]) + "\n", 9, "truncated"),
    (KEY_TEXT.replace(KEY_TEXT.splitlines()[5], KEY_TEXT.splitlines()[5][:-1] + "g"), 6,
     "non-hex character 'g'"),
])
def test_bad_key_file_is_one_line_with_both_locations(
    parse_error: ParseError, pki_dir: Path, body: str, key_line: int, words: str
) -> None:
    (pki_dir / "bad.key").write_text(body)
    error = parse_error(MINIMAL_CLIENT + "tls-auth bad.key 1\n", 7, words)
    assert f"bad.key:{key_line}: " in str(error)


def test_bad_inline_key_points_at_the_config_line(parse_error: ParseError) -> None:
    lines = KEY_TEXT.splitlines()
    lines[7] = "xyz"
    text = MINIMAL_CLIENT + "<tls-crypt>\n" + "\n".join(lines) + "\n</tls-crypt>\n"
    error = parse_error(text, 7, "inline <tls-crypt> block:15:", "non-hex character 'x'")
    assert "\n" not in str(error)


# -- tls-crypt-v2 ------------------------------------------------------------------------------


def test_v2_server_and_client_keys(parse: Parse, pki_dir: Path) -> None:
    from tunnel.protocol.wrap import (
        ClientKey,
        ServerKey,
        TlsCryptV2ClientWrap,
        TlsCryptV2ServerWrap,
    )

    (pki_dir / "s.key").write_text(v.TLS_CRYPT_V2_SERVER_KEY_FILE)
    cfg = parse(MINIMAL_SERVER + "tls-crypt-v2 s.key\ntls-crypt-v2-max-age 30\n")
    assert isinstance(cfg.tls_crypt_v2_key, ServerKey) and cfg.tls_crypt_v2_max_age == 30
    wrap = build_control_wrap(cfg)
    assert isinstance(wrap, TlsCryptV2ServerWrap) and wrap.max_age_days == 30
    cfg = parse(MINIMAL_CLIENT + "<tls-crypt-v2>\n" + v.TLS_CRYPT_V2_CLIENT_KEY_FILE
                + "</tls-crypt-v2>\n")
    assert isinstance(cfg.tls_crypt_v2_key, ClientKey)
    assert isinstance(build_control_wrap(cfg), TlsCryptV2ClientWrap)


def test_v2_corrupt_key(parse_error: ParseError) -> None:
    lines = v.TLS_CRYPT_V2_CLIENT_KEY_FILE.splitlines()
    lines[3] = lines[3][:10] + "*" + lines[3][11:]
    parse_error(MINIMAL_CLIENT + "<tls-crypt-v2>\n" + "\n".join(lines) + "\n</tls-crypt-v2>\n",
                7, "inline <tls-crypt-v2> block:11:", "not base64")
    parse_error(MINIMAL_CLIENT + "<tls-crypt-v2>\n" + v.TLS_AUTH_SHA1_KEY_FILE
                + "</tls-crypt-v2>\n", 7, "holds no '-----BEGIN OpenVPN tls-crypt-v2")
    truncated = "\n".join(v.TLS_CRYPT_V2_CLIENT_KEY_FILE.splitlines()[:5]) + "\n"
    parse_error(MINIMAL_CLIENT + "<tls-crypt-v2>\n" + truncated + "</tls-crypt-v2>\n", 7,
                "truncated")
