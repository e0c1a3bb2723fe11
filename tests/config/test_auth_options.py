"""Username/password options (issue 11 item 1): parsing, stock's consistency rules, credentials."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.config.conftest import MINIMAL_CLIENT, MINIMAL_SERVER, Parse, ParseError
from tunnel.app.connect import ClientRuntime
from tunnel.app.credentials import load_credentials
from tunnel.app.privileges import Target
from tunnel.protocol.errors import ConfigError

CA_ONLY_CLIENT = "".join(
    line + "\n" for line in MINIMAL_CLIENT.splitlines() if not line.startswith(("cert", "key"))
)


def test_client_with_only_ca_needs_auth_user_pass(parse: Parse, parse_error: ParseError,
                                                  tmp_path: Path) -> None:
    parse_error(CA_ONLY_CLIENT, CA_ONLY_CLIENT.count("\n"),
                "No client-side authentication method is specified")
    (tmp_path / "up.txt").write_text("alice\nsecret\r\n")
    cfg = parse(CA_ONLY_CLIENT + f"auth-user-pass {tmp_path / 'up.txt'}\nauth-retry nointeract\n")
    assert cfg.auth_user_pass == str(tmp_path / "up.txt") and cfg.auth_retry == "nointeract"
    creds = load_credentials(cfg)
    assert creds is not None and (creds.username, creds.password) == ("alice", "secret")
    assert "secret" not in repr(creds) and "secret" not in repr(cfg) and not any(
        "secret" in note for note in cfg.notes)


def test_inline_auth_user_pass(parse: Parse) -> None:
    cfg = parse(CA_ONLY_CLIENT + "<auth-user-pass>\nbob\npw with spaces\n</auth-user-pass>\n")
    creds = load_credentials(cfg)
    assert creds is not None and (creds.username, creds.password) == ("bob", "pw with spaces")


def test_no_terminal_to_ask_on_is_a_clear_error(parse: Parse) -> None:
    cfg = parse(CA_ONLY_CLIENT + "auth-user-pass\n")
    assert cfg.auth_user_pass == ""
    with pytest.raises(ConfigError, match="no terminal"):
        load_credentials(cfg)  # pytest's stdin is not a terminal


def test_server_options_and_stocks_rules(parse: Parse, parse_error: ParseError) -> None:
    cfg = parse(MINIMAL_SERVER + "auth-user-pass-verify '/bin/check x' via-file\n"
                "script-security 2\nverify-client-cert optional\nusername-as-common-name\n")
    assert cfg.auth_user_pass_verify == ("/bin/check x", "via-file")
    assert (cfg.verify_client_cert, cfg.username_as_common_name) == ("optional", True)
    end = MINIMAL_SERVER.count("\n") + 1
    parse_error(MINIMAL_SERVER + "verify-client-cert none\n", end,
                "--verify-client-cert none|optional must be used with --management-client-auth, "
                "an --auth-user-pass-verify script, or plugin")
    parse_error(MINIMAL_SERVER + "username-as-common-name\n", end,
                "--username-as-common-name must be used with")
    parse_error(MINIMAL_SERVER + "auth-user-pass-verify /bin/true via-pipe\n", end,
                "option 'auth-user-pass-verify'")
    parse_error(MINIMAL_CLIENT + "auth-user-pass-verify /bin/true via-env\n",
                MINIMAL_CLIENT.count("\n") + 1, "only applies to a server")


def test_auth_nocache_reader_hands_over_then_reads_the_file_again(parse: Parse,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "up.txt"
    path.write_text("alice\nfirst\n")
    cfg = parse(CA_ONLY_CLIENT + f"auth-user-pass {path}\nauth-nocache\n")
    runtime = ClientRuntime(cfg, logging.getLogger("test"), Target(None, None, None, None))
    runtime.user_pass = runtime._user_pass()
    read = runtime._nocache_source()
    assert read is not None and runtime.user_pass is None  # the runtime keeps no copy
    path.write_text("alice\nsecond\n")
    assert read() == ("alice", "first")  # read at start (errors show before anything opens)
    assert read() == ("alice", "second")  # then the file again, each time
    path.unlink()
    with pytest.raises(ConfigError, match="cannot read the auth-user-pass file"):
        read()
