"""The management* options: stock's meaning, its cross-checks, and what we refuse."""

from __future__ import annotations

from tests.config.conftest import MINIMAL_CLIENT, MINIMAL_SERVER, Parse, ParseError


def test_tcp_and_unix_forms(parse: Parse) -> None:
    m = parse(MINIMAL_SERVER + "management 127.0.0.1 7505 pw.txt\nmanagement-hold\n"
              "management-client-auth\nmanagement-log-cache 500\n").management
    assert m is not None and (m.host, m.port, m.unix_path) == ("127.0.0.1", 7505, None)
    assert m.password_file is not None and m.password_file.name == "pw.txt"
    assert (m.hold, m.client_auth, m.log_cache) == (True, True, 500)
    m = parse(MINIMAL_CLIENT + "management /run/ovpn.sock unix\n"
              "management-client-user nobody\n").management
    assert m is not None and str(m.unix_path) == "/run/ovpn.sock" and m.port is None


def test_modifiers_need_a_management_line(parse_error: ParseError) -> None:
    parse_error(MINIMAL_CLIENT + "management-hold\n", MINIMAL_CLIENT.count("\n") + 1,
                "--management is not specified")


def test_client_auth_is_for_servers(parse_error: ParseError) -> None:
    n = MINIMAL_CLIENT.count("\n")
    parse_error(MINIMAL_CLIENT + "management 127.0.0.1 7505\nmanagement-client-auth\n", n + 2,
                "--management-client-auth requires --mode server")


def test_refused_forms(parse_error: ParseError) -> None:
    n = MINIMAL_CLIENT.count("\n")
    parse_error(MINIMAL_CLIENT + "management 127.0.0.1 7505 stdin\n", n + 1, "stdin")
    parse_error(MINIMAL_CLIENT + "management 127.0.0.1 70000\n", n + 1, "management")
    parse_error(MINIMAL_CLIENT + "management 127.0.0.1 7505\nmanagement-external-key\n", n + 2,
                "not supported")
    parse_error(MINIMAL_CLIENT + "management 127.0.0.1 7505\nmanagement-client-user x\n",
                n + 2, "unix")
