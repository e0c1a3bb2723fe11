"""Every error path: one line, located at the right file:line, naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.conftest import (
    CLIENT_TLS,
    MINIMAL_CLIENT,
    MINIMAL_SERVER,
    SERVER_TLS,
    ParseError,
    assert_config_error,
)
from tunnel.config import load_config
from tunnel.protocol.errors import ConfigError

C = MINIMAL_CLIENT  # 6 lines
S = MINIMAL_SERVER  # 7 lines
C_END = C.count("\n")
CLIENT_HEAD = "client\ndev tun\nremote 192.0.2.1\n"  # 3 lines; TLS lines follow

CASES: list[tuple[str, str, int, tuple[str, ...]]] = [
    # (id, config text, line, fragments)
    ("unknown", C + "future-option 1300\n", 7,
     ("unsupported option 'future-option'",
      "(use 'ignore-unknown-option future-option' to skip it)")),
    ("stock-option", C + "fragment 1300\n", 7,
     ("unsupported option 'fragment': OpenVPN applies it, so it is never skipped",)),
    ("unknown-dashes", "--\n" + C, 1, ("unsupported option '--'",)),
    ("port-text", "port abc\n" + C, 1, ("option 'port' expects a number 1..65535, got 'abc'",)),
    ("port-zero", "port 0\n" + C, 1, ("option 'port' expects a number 1..65535, got '0'",)),
    ("port-big", "rport 65536\n" + C, 1, ("option 'rport'", "1..65535")),
    ("port-sign", "lport -1\n" + C, 1, ("option 'lport'", "'-1'")),
    ("missing-ca-file", CLIENT_HEAD + "ca /nonexistent/ca.crt\ncert client.crt\nkey client.key\n",
     4, ("cannot read 'ca' file /nonexistent/ca.crt: No such file or directory",)),
    ("ca-is-dir", CLIENT_HEAD + "ca .\ncert client.crt\nkey client.key\n", 4,
     ("cannot read 'ca' file", "Is a directory")),
    ("ca-not-pem", CLIENT_HEAD + "ca client.key\ncert client.crt\nkey client.key\n", 4,
     ("'ca' file", "holds no PEM certificate")),
    ("key-not-pem", CLIENT_HEAD + "ca ca.crt\ncert client.crt\nkey ca.crt\n", 6,
     ("'key' file", "holds no PEM private key")),
    ("key-encrypted", CLIENT_HEAD + "ca ca.crt\ncert client.crt\n<key>\n"
     "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n-----END ENCRYPTED PRIVATE KEY-----\n</key>\n",
     6, ("inline <key> block", "encrypted private key")),
    ("dh-missing", S + "dh dh.pem\n", 8, ("cannot read 'dh' file", "dh.pem")),
    ("dev-tap", C + "dev tap\n", 7, ("option 'dev': only dev tun is supported, got 'tap'",)),
    ("dev-tap0", C + "dev tap0\n", 7, ("option 'dev'", "only dev tun is supported")),
    ("dev-type-tap", C + "dev-type tap\n", 7, ("option 'dev-type'", "only dev tun")),
    ("dev-null", C + "dev null\n", 7, ("option 'dev'", "only dev tun")),
    ("dev-unknown", C + "dev vpn0\n", 7, ("option 'dev'", "cannot tell the device type")),
    ("dev-long", C + "dev tun0123456789abcdef\n", 7, ("option 'dev'", "1..15 characters")),
    ("no-dev", CLIENT_HEAD.replace("dev tun\n", "") + CLIENT_TLS, 5,
     ("option 'dev' is missing",)),
    ("proto-tcp-server-in-client", C + "proto tcp-server\n", 7,
     ("a client connects: use 'proto tcp-client'",)),
    ("proto-tcp-client-in-server", S + "proto tcp4-client\n", 8,
     ("a server listens: use 'proto tcp-server'",)),
    ("proto-bad", C + "proto sctp\n", 7, ("option 'proto' expects one of", "'sctp'")),
    ("remote-tcp-server", C + "remote 192.0.2.2 443 tcp-server\n", 7,
     ("option 'remote'", "'tcp-server' makes no sense for a remote")),
    ("http-proxy-udp", C + "http-proxy 192.0.2.9 3128\n", 7,
     ("'http-proxy' must be used with TCP remotes", "is udp")),
    ("http-proxy-auto", C + "http-proxy 192.0.2.9 3128 auto\n", 7,
     ("option 'http-proxy': 'auto'", "not supported")),
    ("http-proxy-ntlm", C + "http-proxy 192.0.2.9 3128 auth.txt ntlm\n", 7,
     ("ntlm authentication is not supported",)),
    ("http-proxy-option-first", C + "http-proxy-option AGENT x\n", 7,
     ("needs an 'http-proxy HOST PORT' line before it",)),
    ("socks-proxy", C + "socks-proxy 192.0.2.9 1080\n", 7,
     ("option 'socks-proxy' is not supported",)),
    ("port-share", S + "port-share 127.0.0.1 8443\n", 8,
     ("option 'port-share' is not supported", "its own port")),
    ("socket-flags-bad", C + "socket-flags SO_FOO\n", 7,
     ("option 'socket-flags': only TCP_NODELAY",)),
    ("remote-bad-host", C + "remote 999.1.1.1\n", 7, ("option 'remote'", "host name or IP")),
    ("topology-bad", C + "topology star\n", 7, ("option 'topology'", "'star'")),
    ("tls-auth", C + "tls-auth ta.key 1\n", 7, ("cannot read 'tls-auth' file", "ta.key")),
    ("tls-auth-ignored", "ignore-unknown-option tls-auth\n" + C + "tls-auth ta.key\n", 8,
     ("cannot read 'tls-auth' file",)),
    ("tls-auth-inline", C + "<tls-auth>\nkey\n</tls-auth>\n", 7,
     ("option 'tls-auth': inline <tls-auth> block", "not an OpenVPN static key")),
    ("tls-auth-direction", C + "tls-auth ca.crt 2\n", 7, ("option 'tls-auth'",)),
    ("tls-crypt", C + "tls-crypt tc.key\n", 7, ("cannot read 'tls-crypt' file",)),
    ("tls-crypt-v2", "ignore-unknown-option tls-crypt-v2\n" + C + "tls-crypt-v2 k\n", 8,
     ("cannot read 'tls-crypt-v2' file",)),
    ("key-direction", C + "key-direction 2\n", 7,
     ("option 'key-direction' expects one of '0', '1'",)),
    ("secret", C + "secret static.key\n", 7, ("option 'secret' is not supported",)),
    ("comp-lzo-bad", C + "comp-lzo maybe\n", 7,
     ("option 'comp-lzo': bad comp-lzo option: maybe -- must be 'yes', 'no', or 'adaptive'",)),
    ("compress-bad", C + "compress zstd\n", 7, ("option 'compress': bad comp option: zstd",)),
    ("compress-migrate", C + "compress migrate\n", 7, ("'compress migrate' is not supported",)),
    ("allow-compression-no-then-lz4", C + "allow-compression no\ncompress lz4-v2\n", 8,
     ("Compression is not allowed since allow-compression is set to 'no'",)),
    ("lz4-then-allow-compression-no", C + "comp-lzo\nallow-compression no\n", 8,
     ("'--allow-compression no' conflicts with enabling compression",)),
    ("allow-compression-after-no", C + "allow-compression no\nallow-compression asym\n", 8,
     ("Cannot set allow-compression to 'asym' after set to 'no'",)),
    ("allow-compression-bad", C + "allow-compression maybe\n", 7, ("option 'allow-compression'",)),
    ("cipher-bf-cbc", C + "data-ciphers AES-256-GCM:BF-CBC\n", 7,
     ("option 'data-ciphers': Unsupported cipher in --data-ciphers: BF-CBC",
      "AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305, AES-128-CBC")),
    ("cipher-none-list", C + "data-ciphers AES-256-GCM:none\n", 7,
     ("option 'data-ciphers': cipher 'none'", "clear text")),
    ("cipher-none", C + "cipher none\n", 7, ("option 'cipher none'", "not supported")),
    ("auth-none", C + "auth none\n", 7, ("option 'auth none'", "not supported")),
    ("auth-md5", C + "auth MD5\n", 7, ("option 'auth': digest 'MD5' is not supported",)),
    ("ncp-cipher-bad", C + "ncp-ciphers BF-CBC\n", 7, ("option 'ncp-ciphers'", ": BF-CBC")),
    ("ciphers-none-left", C + "data-ciphers ?BF-CBC\n", 7,
     ("option 'data-ciphers' leaves no usable cipher",)),
    ("fallback-bad", C + "data-ciphers-fallback BF-CBC\n", 7,
     ("option 'data-ciphers-fallback'", "'BF-CBC'")),
    ("flag-with-arg", "client yes\n" + C, 1, ("option 'client' takes no arguments, got 1",)),
    ("remote-no-args", C + "remote\n", 7,
     ("option 'remote' expects 'remote HOST [PORT] [PROTO]', got 0 arguments",)),
    ("remote-too-many", C + "remote a 1 udp x\n", 7, ("option 'remote'", "got 4 arguments")),
    ("keepalive-one", C + "keepalive 10\n", 7, ("option 'keepalive' expects",)),
    ("push-two", S + "push route 10.0.0.0\n", 8, ("option 'push' expects", "got 2 arguments")),
    ("ciphers-two", C + "data-ciphers A B\n", 7, ("option 'data-ciphers' expects",)),
    ("ca-no-file", C + "ca\n", 7, ("option 'ca' expects", "inline <ca> block")),
    ("inline-not-allowed", C + "<remote>\n192.0.2.1\n</remote>\n", 7,
     ("option 'remote' cannot be given as an inline <remote> block",)),
    ("keepalive-ratio", C + "keepalive 10 15\n", 7,
     ("option 'keepalive'", "at least twice", "(10)")),
    ("keepalive-zero", C + "keepalive 0 60\n", 7, ("option 'keepalive' expects a number",)),
    ("keepalive-and-ping", C + "keepalive 10 60\nping 5\n", 7,
     ("option 'keepalive' conflicts with",)),
    ("server-host-bits", "dev tun\nserver 10.8.0.1 255.255.255.0\n" + SERVER_TLS, 2,
     ("option 'server'", "not a network address", "did you mean 10.8.0.0?")),
    ("server-too-small", "dev tun\nserver 10.8.0.0 255.255.255.252\n" + SERVER_TLS, 2,
     ("option 'server'", "/16../29")),
    ("server-too-big", "dev tun\nserver 10.0.0.0 255.0.0.0\n" + SERVER_TLS, 2,
     ("option 'server'", "/16../29")),
    ("server-bad-mask", "dev tun\nserver 10.8.0.0 255.0.255.0\n" + SERVER_TLS, 2,
     ("option 'server' expects a netmask", "'255.0.255.0'")),
    ("server-bad-flag", "dev tun\nserver 10.8.0.0 255.255.255.0 pool\n" + SERVER_TLS, 2,
     ("option 'server' expects one of 'nopool'",)),
    ("server-and-client", "client\n" + S, 4, ("options 'server' and 'client'",)),
    ("server-and-pool", S + "ifconfig-pool 10.8.0.50 10.8.0.60\n", 8,
     ("option 'ifconfig-pool' conflicts with 'server'", "nopool")),
    ("server-and-remote", S + "remote 192.0.2.1\n", 8,
     ("option 'remote' cannot be used in a server",)),
    ("server-and-nobind", S + "nobind\n", 8, ("option 'nobind' cannot be used in a server",)),
    ("server-and-pull", S + "pull\n", 8, ("'pull'/'client' cannot be used in a server",)),
    ("server-ipv6-prefix", S + "server-ipv6 fd00::/48\n", 8,
     ("option 'server-ipv6' expects an IPv6 address with a prefix length /64../124",)),
    ("server-ipv6-client", C + "server-ipv6 fd00::/64\n", 7,
     ("options 'server-ipv6' and 'client'",)),
    ("server-ipv6-overflow", S + "server-ipv6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/64\n", 8,
     ("option 'server-ipv6'", "leaves no room", "ffff:ffff:ffff:ffff::/64")),
    ("server-ipv6-scope", S + "server-ipv6 fe80::%eth0/64\n", 8, ("option 'server-ipv6'",)),
    ("ipv6-pool-without-ipv6", S + "ifconfig-ipv6-pool fd00::1000/64\n", 8,
     ("option 'ifconfig-ipv6-pool' needs 'ifconfig-ipv6'",)),
    ("no-role", "dev tun\n" + CLIENT_TLS, 4, ("no role", "'client'", "'server NET MASK'")),
    ("both-roles", C + "tls-server\n", 1, ("not both",)),
    ("mode-bad", C + "mode hub\n", 7, ("option 'mode' expects one of 'p2p', 'server'",)),
    ("mode-server-client", "mode server\n" + C, 1,
     ("option 'mode server' needs 'tls-server'",)),
    ("no-ca", CLIENT_HEAD + "cert client.crt\nkey client.key\n", 5, ("option 'ca' is missing",)),
    ("cert-without-key", CLIENT_HEAD + "ca ca.crt\ncert client.crt\n", 5,
     ("option 'cert' needs a matching 'key'",)),
    ("key-without-cert", CLIENT_HEAD + "ca ca.crt\nkey client.key\n", 5,
     ("option 'key' needs a matching 'cert'",)),
    ("no-cert-no-key", CLIENT_HEAD + "ca ca.crt\n", 4,
     ("options 'cert' and 'key' are missing", "--cert/--key or --auth-user-pass")),
    ("client-without-remote", "client\ndev tun\n" + CLIENT_TLS, 1,
     ("a client needs at least one 'remote HOST [PORT]'",)),
    ("server-without-address", "tls-server\ndev tun\n" + SERVER_TLS, 1,
     ("a server needs its tunnel address", "'server NET MASK'")),
    ("ifconfig-p2p", C + "ifconfig 10.8.0.1 10.8.0.2\n", 7,
     ("option 'ifconfig'", "second argument is a netmask", "'10.8.0.2'")),
    ("ifconfig-network-address", C + "ifconfig 10.8.0.0 255.255.255.0\n", 7,
     ("option 'ifconfig'", "network or broadcast address")),
    ("pool-outside", "mode server\ntls-server\ndev tun\nifconfig 10.8.0.1 255.255.255.0\n"
     "ifconfig-pool 10.9.0.2 10.9.0.9\n" + SERVER_TLS, 5,
     ("option 'ifconfig-pool'", "not inside the server's subnet 10.8.0.0/24")),
    ("pool-has-server", "mode server\ntls-server\ndev tun\nifconfig 10.8.0.5 255.255.255.0\n"
     "ifconfig-pool 10.8.0.2 10.8.0.9\n" + SERVER_TLS, 5,
     ("option 'ifconfig-pool'", "contains the server's own address 10.8.0.5")),
    ("pool-reversed", S.replace("0.0 255.255.255.0", "0.0 255.255.255.0 nopool")
     + "ifconfig-pool 10.8.0.9 10.8.0.2\n", 8, ("option 'ifconfig-pool': start",)),
    ("pool-on-client", C + "client-to-client\n", 7,
     ("option 'client-to-client' needs a multi-client server",)),
    ("tls-versions", C + "tls-version-min 1.3\ntls-version-max 1.2\n", 7,
     ("option 'tls-version-min' 1.3 is above 'tls-version-max' 1.2",)),
    ("tls-version-bad", C + "tls-version-min 2.0\n", 7, ("option 'tls-version-min'", "'2.0'")),
    ("x509-type", C + "verify-x509-name srv cn\n", 7, ("option 'verify-x509-name'", "'cn'")),
    ("remote-cert-tls", C + "remote-cert-tls peer\n", 7, ("option 'remote-cert-tls'",)),
    ("route-host-bits", C + "route 10.0.0.1 255.0.0.0\n", 7,
     ("option 'route': 10.0.0.1 has host bits set", "did you mean 10.0.0.0?")),
    ("route-ipv6-in-route", C + "route 2001:db8::/32\n", 7,
     ("option 'route' is IPv4 only", "'route-ipv6'")),
    ("route-ipv6-gateway", C + "route 10.0.0.0 255.0.0.0 fe80::1\n", 7,
     ("option 'route' needs an IPv4 gateway", "'fe80::1'")),
    ("route-default", C + "route default\n", 7, ("option 'route' needs a destination",)),
    ("route-metric", C + "route 10.0.0.0 255.0.0.0 vpn_gateway -1\n", 7,
     ("option 'route' expects a number", "'-1'")),
    ("route-ipv6-gw", C + "route-ipv6 2001:db8::/32 gw\n", 7,
     ("option 'route-ipv6' expects an IPv6 address, got 'gw'",)),
    ("push-comma", S + 'push "route 10.0.0.0 255.0.0.0,dhcp-option DNS 1.1.1.1"\n', 8,
     ("option 'push': a pushed option cannot contain ','",)),
    ("push-empty", S + 'push ""\n', 8, ("option 'push' needs a non-empty option",)),
    ("lexer-quote", C + 'push "route 10.0.0.0\n', 7, ("option 'push': no closing quotation",)),
    ("lexer-inline", C + "<ca>\n-----BEGIN CERTIFICATE-----\n", 7,
     ("option 'ca': inline block <ca> is never closed",)),
    ("local-nobind", C + "local 192.0.2.5\nnobind\n", 7,
     ("options 'local' and 'nobind' contradict",)),
    ("lport-nobind", C + "lport 5000\nnobind\n", 7, ("options 'lport' and 'nobind'",)),
    ("nobind-without-remote", "tls-server\ndev tun\nifconfig 10.8.0.1 255.255.255.0\nnobind\n"
     + SERVER_TLS, 4, ("option 'nobind' only makes sense with a 'remote'",)),
    ("tun-mtu-small", C + "tun-mtu 50\n", 7, ("option 'tun-mtu' expects a number 100..65535",)),
    ("mssfix-flag", C + "mssfix 1400 both\n", 7, ("option 'mssfix' expects one of",)),
    ("replay-window", C + "replay-window 70000\n", 7, ("option 'replay-window'", "0..65536")),
    ("replay-time", C + "replay-window 64 700\n", 7, ("option 'replay-window'", "0..600")),
    ("reneg-min", C + "reneg-sec 100 200\n", 7, ("option 'reneg-sec' expects a number 0..100",)),
    ("status-version", C + "status-version 4\n", 7, ("option 'status-version'", "1..3")),
    ("verb", C + "verb 12\n", 7, ("option 'verb' expects a number 0..11",)),
    ("user-empty", C + 'user ""\n', 7, ("option 'user' needs a non-empty name",)),
    ("huge-number", C + "verb 99999999999999999999999999\n", 7, ("option 'verb'",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_error(parse_error: ParseError, text: str, line: int, fragments: tuple[str, ...]) -> None:
    parse_error(text, line, *fragments)


def test_missing_option_errors_point_at_the_end_of_the_file(parse_error: ParseError) -> None:
    text = C.replace("dev tun\n", "") + "\n\n# trailing comment\n"
    parse_error(text, C_END + 2, "option 'dev' is missing")


def test_the_brief_examples_verbatim(parse_error: ParseError) -> None:
    error = parse_error("port abc\n" + C, 1)
    assert str(error) == "test.conf:1: option 'port' expects a number 1..65535, got 'abc'"
    error = parse_error(C + "fragmentation 1300\n", 7)
    assert str(error) == (
        "test.conf:7: unsupported option 'fragmentation' (use 'ignore-unknown-option "
        "fragmentation' to skip it)"
    )


def test_control_characters_in_values_stay_on_one_line(parse_error: ParseError) -> None:
    error = parse_error(C + 'port "1\r"\n', 7)  # the \r is inside the quoted word
    assert "\\r" in str(error)
    error = parse_error(C + 'dev "a\x0cb"\n', 7)
    assert "\\x0c" in str(error)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.conf")
    assert str(info.value) == f"{tmp_path / 'nope.conf'}:0: cannot read the config file: " + (
        "No such file or directory"
    )


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"client\ndev tun\nuser j\xf6rg\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: the config file is not UTF-8 text"


def test_load_config_reports_the_path_as_given(tmp_path: Path, pki_dir: Path) -> None:
    path = pki_dir / "client.ovpn"
    path.write_text("client\ndev tap\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:2: option 'dev': only dev tun is supported")


def test_assert_helper_rejects_multiline() -> None:
    with pytest.raises(AssertionError):
        assert_config_error(ConfigError("test.conf:1: a\nb"), 1)
