"""TCP and connection-profile options: proto words, remotes per protocol, <connection> blocks."""

from __future__ import annotations

from tests.config.conftest import CLIENT_TLS, MINIMAL_SERVER, Parse, ParseError
from tunnel.app.build import link_proto, profile_view, uses_tcp

HEAD = "client\ndev tun\n"  # 2 lines; CLIENT_TLS adds 3


def test_proto_words_and_remote_protocols(parse: Parse) -> None:
    cfg = parse(HEAD + CLIENT_TLS + "proto tcp-client\nremote 192.0.2.1 443\n"
                "remote 192.0.2.2 1194 udp\nremote 192.0.2.3 443 tcp6\n")
    assert [(r.host, r.port, r.proto) for r in cfg.remotes] == [
        ("192.0.2.1", 443, "tcp"), ("192.0.2.2", 1194, "udp"), ("192.0.2.3", 443, "tcp6")]
    assert uses_tcp(cfg)
    assert link_proto(cfg, tcp=True, ipv6_link=False) == "TCPv4_CLIENT"


def test_server_tcp_and_nodelay_push(parse: Parse) -> None:
    from tunnel.app.build import build_server_settings, build_session_settings

    cfg = parse(MINIMAL_SERVER + "proto tcp\ntcp-nodelay\nmax-clients 5\n")
    assert cfg.proto == "tcp" and cfg.tcp_nodelay
    session = build_session_settings(cfg, ipv6_link=False)
    assert "proto TCPv4_SERVER" in session.options_string
    assert build_server_settings(cfg, session).push[-1] == "socket-flags TCP_NODELAY"


def test_retry_and_timeouts(parse: Parse) -> None:
    cfg = parse(HEAD + CLIENT_TLS + "remote 192.0.2.1\nconnect-retry 3 30\n"
                "connect-retry-max 4\nserver-poll-timeout 7\n")
    assert (cfg.connect_retry, cfg.connect_retry_max, cfg.connect_retry_tries) == (3, 30, 4)
    assert cfg.connect_timeout == 7
    assert parse(HEAD + CLIENT_TLS + "remote 192.0.2.1\nconnect-timeout 9\n").connect_timeout == 9


BLOCKS = """\
connect-retry 2 20
server-poll-timeout 60
<connection>
remote 192.0.2.1 1194 udp
server-poll-timeout 4
explicit-exit-notify 2
</connection>
<connection>
remote 192.0.2.2 443
proto tcp-client
mssfix 1300
lport 5000
</connection>
remote 192.0.2.9 1194
"""


def test_connection_blocks_carry_their_own_options(parse: Parse) -> None:
    cfg = parse(HEAD + CLIENT_TLS + BLOCKS)
    first, second = cfg.remotes  # the plain `remote` line is ignored, as stock ignores it
    assert (first.host, first.port, first.proto) == ("192.0.2.1", 1194, "udp")
    assert (second.host, second.port, second.proto) == ("192.0.2.2", 443, "tcp")
    assert first.profile is not None and second.profile is not None
    assert first.profile.connect_timeout == 4 and second.profile.connect_timeout == 60
    assert first.profile.connect_retry == second.profile.connect_retry == 2
    view1, view2 = profile_view(cfg, first), profile_view(cfg, second)
    assert view1.explicit_exit_notify == 2 and view2.explicit_exit_notify == 0
    assert (view2.mssfix, view2.mssfix_mode) == (1300, "payload")
    assert (view1.mssfix, view1.mssfix_mode) == (1492, "mtu")  # the global default
    assert view2.bind_local and view2.lport == 5000 and not view1.bind_local
    assert any("ignored when the file has <connection> blocks" in n for n in cfg.notes)


def test_global_options_after_a_block_do_not_reach_it(parse: Parse) -> None:
    cfg = parse(HEAD + CLIENT_TLS + "<connection>\nremote 192.0.2.1\n</connection>\n"
                "connect-timeout 5\n")
    assert cfg.remotes[0].profile is not None
    assert cfg.remotes[0].profile.connect_timeout == 120  # stock: sub.ce copied at the block


def test_connection_block_errors(parse_error: ParseError) -> None:
    base = HEAD + CLIENT_TLS  # 5 lines
    parse_error(base + "<connection>\nproto tcp\n</connection>\n", 6,
                "exactly one 'remote' line", "has 0")
    parse_error(base + "<connection>\nremote 192.0.2.1\nremote 192.0.2.2\n</connection>\n", 6,
                "exactly one 'remote'")
    parse_error(base + "<connection>\nremote 192.0.2.1\nverb 4\n</connection>\n", 8,
                "option 'verb' cannot be used inside a <connection> block")
    parse_error(base + "<connection>\nremote 192.0.2.1\nport abc\n</connection>\n", 8,
                "option 'port'")
    parse_error(base + "<connection>\nremote 192.0.2.1\ntun-mtu 1400\n</connection>\n", 6,
                "'tun-mtu' inside <connection>")
    parse_error(MINIMAL_SERVER + "<connection>\nremote 192.0.2.1\n</connection>\n", 8,
                "<connection> blocks cannot be used in a server")


def test_http_proxy_options(parse: Parse, pki_dir) -> None:  # type: ignore[no-untyped-def]
    (pki_dir / "proxy-auth.txt").write_text("alice\ns3cret\n")
    cfg = parse(HEAD + CLIENT_TLS + "remote vpn.example.com 443 tcp\n"
                "http-proxy proxy.example.com 8080 proxy-auth.txt basic\n"
                "http-proxy-option VERSION 1.1\nhttp-proxy-option AGENT Mozilla/5.0\n"
                "http-proxy-option CUSTOM-HEADER X-Test yes\n")
    proxy = cfg.http_proxy
    assert proxy is not None
    assert (proxy.host, proxy.port, proxy.auth, proxy.username) == (
        "proxy.example.com", 8080, "basic", "alice")
    assert (proxy.version, proxy.agent, proxy.headers) == ("1.1", "Mozilla/5.0",
                                                           (("X-Test", "yes"),))
    assert "s3cret" not in repr(cfg)
    inline = parse(HEAD + CLIENT_TLS + "remote vpn.example.com 443 tcp\n"
                   "http-proxy proxy.example.com 8080\n"
                   "<http-proxy-user-pass>\nbob\npw\n</http-proxy-user-pass>\n").http_proxy
    assert inline is not None and (inline.auth, inline.username, inline.password) == (
        "basic", "bob", "pw")


def test_connect_request_as_stock_builds_it() -> None:
    from tunnel.io.client_link import connect_request

    assert connect_request("vpn.example.com", 443) == (
        b"CONNECT vpn.example.com:443 HTTP/1.0\r\n\r\n")
    request = connect_request("vpn.example.com", 443, version="1.1", agent="A",
                              headers=[("X-Y", "z")], basic=("alice", "s3cret"))
    assert request == (b"CONNECT vpn.example.com:443 HTTP/1.1\r\nHost: vpn.example.com\r\n"
                       b"User-Agent: A\r\nX-Y: z\r\n"
                       b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n")
