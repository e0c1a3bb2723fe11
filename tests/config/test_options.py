"""Option semantics: what each option (and OpenVPN's helper expansion) puts in the model."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network

import pytest

from tests.config.conftest import (
    CLIENT_TLS,
    MINIMAL_CLIENT,
    MINIMAL_SERVER,
    SERVER_TLS,
    Parse,
    ParseError,
)
from tunnel.config import SUPPORTED_OPTIONS, AddressPool, Remote, Route, RouteIPv6
from tunnel.protocol.errors import ConfigError

P2P_SERVER = "tls-server\ndev tun\nifconfig 10.9.0.1 255.255.255.0\n" + SERVER_TLS


# -- keepalive (helper_keepalive) -------------------------------------------------------


def test_keepalive_on_a_client(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "keepalive 10 60\n")
    assert (cfg.ping, cfg.ping_restart, cfg.ping_exit) == (10, 60, 0)
    assert (cfg.push_ping, cfg.push_ping_restart) == (None, None)
    assert cfg.keepalive == (10, 60)


def test_keepalive_on_a_server_doubles_its_own_restart_and_pushes(parse: Parse) -> None:
    cfg = parse(MINIMAL_SERVER + "keepalive 5 30\n")
    assert (cfg.ping, cfg.ping_restart) == (5, 60)
    assert (cfg.push_ping, cfg.push_ping_restart) == (5, 30)
    assert cfg.push_list[-2:] == ["ping 5", "ping-restart 30"]


def test_keepalive_on_a_point_to_point_tls_server_is_not_doubled(parse: Parse) -> None:
    cfg = parse(P2P_SERVER + "keepalive 10 60\n")
    assert (cfg.role, cfg.mode) == ("server", "p2p")
    assert (cfg.ping, cfg.ping_restart, cfg.push_ping) == (10, 60, None)


def test_keepalive_with_zero_ping_options_does_not_conflict(parse: Parse) -> None:
    # helper_keepalive() only objects to ping options that are actually set.
    cfg = parse(MINIMAL_CLIENT + "ping 0\nkeepalive 10 60\n")
    assert (cfg.ping, cfg.ping_restart) == (10, 60)


def test_explicit_ping_options_without_keepalive(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "ping 15\nping-restart 90\n")
    assert (cfg.ping, cfg.ping_restart, cfg.ping_exit) == (15, 90, 0)
    cfg = parse(MINIMAL_CLIENT + "ping-restart 90\nping-exit 30\n")  # the later one wins
    assert (cfg.ping_restart, cfg.ping_exit) == (0, 30)


# -- server / server-ipv6 / client (helper_client_server) -------------------------------


@pytest.mark.parametrize(
    ("network", "mask", "server_ip", "pool"),
    [
        ("10.8.0.0", "255.255.255.0", "10.8.0.1", ("10.8.0.2", "10.8.0.254")),
        ("172.16.0.0", "255.255.0.0", "172.16.0.1", ("172.16.0.2", "172.16.255.254")),
        ("10.8.0.8", "255.255.255.248", "10.8.0.9", ("10.8.0.10", "10.8.0.14")),
    ],
)
def test_server_expansion(
    parse: Parse, network: str, mask: str, server_ip: str, pool: tuple[str, str]
) -> None:
    cfg = parse(f"dev tun\nserver {network} {mask}\n" + SERVER_TLS)
    assert (cfg.role, cfg.mode, cfg.tls_server) == ("server", "server", True)
    assert cfg.ifconfig == IPv4Interface(f"{server_ip}/{mask}")
    assert cfg.pool == AddressPool(IPv4Address(pool[0]), IPv4Address(pool[1]), IPv4Address(mask))
    assert cfg.route_gateway == IPv4Address(server_ip)
    assert cfg.push_list == [f"route-gateway {server_ip}", "topology subnet"]


def test_server_without_topology_leaves_a_note(parse: Parse) -> None:
    cfg = parse("dev tun\nserver 10.8.0.0 255.255.255.0\n" + SERVER_TLS)
    assert cfg.topology == "subnet"
    assert cfg.notes == [
        "test.conf:2: no 'topology' given: using 'topology subnet' (OpenVPN 2.7's default; a "
        "stock 2.6 server would use net30 here)"
    ]
    assert parse(MINIMAL_SERVER).notes == []  # MINIMAL_SERVER says topology subnet


def test_server_nopool_with_own_pool(parse: Parse) -> None:
    cfg = parse(
        "dev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0 nopool\n"
        "ifconfig-pool 10.8.0.100 10.8.0.199\n" + SERVER_TLS
    )
    assert cfg.server_nopool
    # helper.c gives the pool the server's netmask whatever ifconfig-pool said.
    assert cfg.pool == AddressPool(
        IPv4Address("10.8.0.100"), IPv4Address("10.8.0.199"), IPv4Address("255.255.255.0")
    )
    assert cfg.pool is not None and cfg.pool.size == 100


def test_server_replaces_an_explicit_ifconfig_with_a_note(parse: Parse) -> None:
    cfg = parse("ifconfig 10.8.0.5 255.255.255.0\n" + MINIMAL_SERVER)
    assert cfg.ifconfig == IPv4Interface("10.8.0.1/24")
    assert any("'ifconfig' is replaced" in note for note in cfg.notes)


def test_manual_multi_client_server(parse: Parse) -> None:
    cfg = parse(
        "mode server\ntls-server\ndev tun\nifconfig 10.8.0.1 255.255.255.0\n"
        "ifconfig-pool 10.8.0.10 10.8.0.20 255.255.255.0\nkeepalive 10 60\n" + SERVER_TLS
    )
    assert (cfg.role, cfg.mode) == ("server", "server")
    assert cfg.pool == AddressPool(
        IPv4Address("10.8.0.10"), IPv4Address("10.8.0.20"), IPv4Address("255.255.255.0")
    )
    assert (cfg.ping_restart, cfg.push_ping_restart) == (120, 60)
    assert cfg.push_list == ["ping 10", "ping-restart 60"]  # no server directive, no gateway


@pytest.mark.parametrize(
    ("prefix", "local", "pool"),
    [
        ("fd00:8::/64", "fd00:8::1/64", "fd00:8::1000/64"),
        ("fd00:8::/112", "fd00:8::1/112", "fd00:8::2/112"),
    ],
)
def test_server_ipv6_expansion(parse: Parse, prefix: str, local: str, pool: str) -> None:
    cfg = parse(MINIMAL_SERVER + f'server-ipv6 {prefix}\npush "route 10.0.0.0 255.0.0.0"\n')
    assert cfg.ifconfig_ipv6 == IPv6Interface(local)
    assert cfg.ifconfig_ipv6_remote == IPv6Interface(local).ip + 1
    assert cfg.pool_ipv6 == IPv6Interface(pool)
    # The push lines first, then what the helpers add (helper.c order).
    assert cfg.push_list == [
        "route 10.0.0.0 255.0.0.0",
        "tun-ipv6",
        "route-gateway 10.8.0.1",
        "topology subnet",
    ]


def test_ipv6_only_server(parse: Parse) -> None:
    cfg = parse("dev tun\ntopology subnet\nserver-ipv6 fd00::/64\n" + SERVER_TLS)
    assert (cfg.role, cfg.mode, cfg.ifconfig, cfg.pool) == ("server", "server", None, None)
    assert cfg.ifconfig_ipv6 == IPv6Interface("fd00::1/64")


# -- link --------------------------------------------------------------------------------


def test_remotes_keep_order_and_fall_back_to_rport_and_proto(parse: Parse) -> None:
    cfg = parse(
        "client\ndev tun\nremote a.example.com\nremote 192.0.2.2 443\nremote 2001:db8::1 53 udp6"
        "\nremote-random\nproto udp4\nrport 1195\n" + CLIENT_TLS
    )
    assert cfg.remotes == [
        Remote("a.example.com", 1195, "udp4"),  # rport/proto apply even when given later
        Remote("192.0.2.2", 443, "udp4"),
        Remote("2001:db8::1", 53, "udp6"),
    ]
    assert cfg.remote_random


def test_ports(parse: Parse) -> None:
    cfg = parse(MINIMAL_SERVER + "port 1200\n")
    assert (cfg.lport, cfg.rport) == (1200, 1200)
    cfg = parse(MINIMAL_SERVER + "port 1200\nlport 1300\n")
    assert (cfg.lport, cfg.rport) == (1300, 1200)


@pytest.mark.parametrize(
    ("extra", "bind_local"),
    [("", False), ("lport 5000\n", True), ("local 192.0.2.9\n", True), ("nobind\n", False)],
)
def test_a_pulling_client_binds_only_when_asked(parse: Parse, extra: str, bind_local: bool) -> None:
    assert parse(MINIMAL_CLIENT + extra).bind_local is bind_local


def test_tls_client_without_pull_binds(parse: Parse) -> None:
    cfg = parse("tls-client\ndev tun\nremote 192.0.2.1\n" + CLIENT_TLS)
    assert (cfg.role, cfg.pull, cfg.bind_local) == ("client", False, True)


@pytest.mark.parametrize(
    ("extra", "dev", "dev_type"),
    [("dev tun0\n", "tun0", "tun"), ("dev vpn\ndev-type tun\n", "vpn", "tun")],
)
def test_device_names(parse: Parse, extra: str, dev: str, dev_type: str) -> None:
    cfg = parse("client\nremote 192.0.2.1\n" + CLIENT_TLS + extra)
    assert (cfg.dev, cfg.dev_type) == (dev, dev_type)


# -- MTU ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "tun_mtu", "mssfix", "mode"),
    [
        ("", 1500, 1492, "mtu"),
        ("tun-mtu 1400\n", 1400, 1400, "fixed"),  # non-default MTU: clamp to the tun size
        ("mssfix 0\n", 1500, None, "payload"),
        ("mssfix 1450\n", 1500, 1450, "payload"),
        ("mssfix 1450 mtu\n", 1500, 1450, "mtu"),
        ("mssfix 1300 fixed\n", 1500, 1300, "fixed"),
        ("mssfix 1400\nmssfix\n", 1500, 1492, "mtu"),  # a bare mssfix restores the default
    ],
)
def test_mtu_and_mssfix(
    parse: Parse, extra: str, tun_mtu: int, mssfix: int | None, mode: str
) -> None:
    cfg = parse(MINIMAL_CLIENT + extra)
    assert (cfg.tun_mtu, cfg.mssfix, cfg.mssfix_mode) == (tun_mtu, mssfix, mode)


# -- routes and pushes -------------------------------------------------------------------


def test_routes(parse: Parse) -> None:
    cfg = parse(
        MINIMAL_CLIENT + "route 10.0.0.0 255.0.0.0\nroute 192.0.2.55\n"
        "route 198.51.100.0 255.255.255.0 vpn_gateway 5\nroute net_gateway default default 7\n"
        "route internal.example.com 255.255.255.255 10.8.0.1\n"
        "route-ipv6 2001:db8:1::/48\nroute-ipv6 2001:db8:2::5/64 fd00::1 3\n"
    )
    assert cfg.routes == [
        Route(IPv4Address("10.0.0.0"), IPv4Address("255.0.0.0")),
        Route(IPv4Address("192.0.2.55")),
        Route(IPv4Address("198.51.100.0"), IPv4Address("255.255.255.0"), "vpn_gateway", 5),
        Route("net_gateway", metric=7),
        Route("internal.example.com", gateway=IPv4Address("10.8.0.1")),
    ]
    assert cfg.routes[0].ip_network is not None and str(cfg.routes[0].ip_network) == "10.0.0.0/8"
    assert cfg.routes[3].ip_network is None
    assert cfg.routes_ipv6 == [
        RouteIPv6(IPv6Network("2001:db8:1::/48")),
        RouteIPv6(IPv6Network("2001:db8:2::/64"), IPv6Address("fd00::1"), 3),  # host bits cleared
    ]


def test_pushes_are_kept_in_order(parse: Parse) -> None:
    cfg = parse(
        MINIMAL_SERVER + 'push "route 10.1.0.0 255.255.0.0"\npush "dhcp-option DNS 10.8.0.1"\n'
        "push redirect-gateway\n"
    )
    assert cfg.pushes == [
        "route 10.1.0.0 255.255.0.0",
        "dhcp-option DNS 10.8.0.1",
        "redirect-gateway",
    ]
    assert cfg.push_list[:3] == cfg.pushes


# -- TLS and data channel ----------------------------------------------------------------


def test_data_ciphers(parse: Parse) -> None:
    cfg = parse(
        MINIMAL_CLIENT
        + "data-ciphers chacha20-poly1305:AES-128-GCM:?BF-CBC:AES-128-gcm:aes-256-cbc\n"
    )
    assert cfg.data_ciphers == ["CHACHA20-POLY1305", "AES-128-GCM", "AES-256-CBC"]
    assert cfg.notes == ["test.conf:7: Unsupported optional cipher in --data-ciphers: BF-CBC"]


def test_ncp_ciphers_alias_and_fallback(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "ncp-ciphers AES-128-GCM\ndata-ciphers-fallback aes-256-cbc\n")
    assert (cfg.data_ciphers, cfg.data_ciphers_fallback) == (["AES-128-GCM"], "AES-256-CBC")
    assert cfg.cipher == "AES-256-CBC"  # options.c: the fallback sets --cipher too
    assert any("Treating option '--ncp-ciphers' as  '--data-ciphers'" in note
               or "Treating option '--ncp-ciphers' as '--data-ciphers'" in note
               for note in cfg.notes)


def test_cipher_after_fallback_renames_the_fallback(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "data-ciphers-fallback AES-256-CBC\ncipher AES-128-CBC\n")
    assert (cfg.cipher, cfg.data_ciphers_fallback) == ("AES-128-CBC", "AES-128-CBC")
    assert cfg.notes == []  # with a fallback, stock does not warn about --cipher


def test_default_data_ciphers(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT)
    assert cfg.data_ciphers == ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
    assert cfg.auth is None  # SHA1 at run time, as in stock


def test_legacy_cipher_warns_as_stock_and_auth_is_applied(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "cipher AES-256-CBC\nauth sha256\n")
    assert (cfg.cipher, cfg.auth) == ("AES-256-CBC", "SHA256")
    assert cfg.notes == [
        "test.conf:7: DEPRECATED OPTION: --cipher set to 'AES-256-CBC' but missing in "
        "--data-ciphers (DEFAULT). OpenVPN ignores --cipher for cipher negotiations."
    ]
    assert parse(MINIMAL_CLIENT + "cipher aes-256-gcm\n").notes == []  # in data-ciphers
    cfg = parse(MINIMAL_CLIENT + "data-ciphers AES-256-GCM:AES-256-CBC\ncipher AES-256-CBC\n")
    assert cfg.notes == []
    # An old config's CFB/OFB cipher: stock 2.6 runs it (crypto.c openvpn_encrypt_v1).
    for name in ("AES-256-CFB", "AES-128-OFB"):
        cfg = parse(MINIMAL_CLIENT + f"cipher {name.lower()}\n")
        assert cfg.cipher == name and "DEPRECATED OPTION" in cfg.notes[0]
        assert parse(MINIMAL_CLIENT + f"data-ciphers {name}\n").data_ciphers == [name]
    # BF-CBC (2.3's default) is accepted as a --cipher nobody negotiates, with the warning.
    cfg = parse(MINIMAL_CLIENT + "cipher BF-CBC\n")
    assert cfg.cipher == "BF-CBC" and "DEPRECATED OPTION" in cfg.notes[0]


@pytest.mark.parametrize(("line", "kind", "mode"), [
    ("comp-lzo", "lzo", "asym"),
    ("comp-lzo yes", "lzo", "asym"),
    ("comp-lzo adaptive", "lzo", "asym"),
    ("comp-lzo no", "stub", "stub-only"),
    ("compress", "swap-stub", "stub-only"),
    ("compress stub", "swap-stub", "stub-only"),
    ("compress stub-v2", "stub-v2", "stub-only"),
    ("compress lzo", "lzo", "asym"),
    ("compress lz4", "lz4", "asym"),
    ("compress lz4-v2", "lz4-v2", "asym"),
])
def test_compression_options_choose_a_framing(parse: Parse, line: str, kind: str,
                                              mode: str) -> None:
    cfg = parse(MINIMAL_CLIENT + line + "\n")
    assert (cfg.compression, cfg.compression_mode) == (kind, mode)
    assert cfg.comp_lzo_stub is (kind == "stub")
    warned = any("Compression for receiving enabled" in note for note in cfg.notes)
    assert warned is (mode == "asym")  # stock's warning when a real algorithm decompresses


def test_allow_compression_modes(parse: Parse) -> None:
    assert parse(MINIMAL_CLIENT).compression_mode == "stub-only"  # 2.6's default
    cfg = parse(MINIMAL_CLIENT + "compress stub-v2\nallow-compression asym\n")
    assert cfg.compression_mode == "asym"
    cfg = parse(MINIMAL_CLIENT + "allow-compression yes\ncompress lz4\n")
    assert cfg.compression_mode == "asym"
    assert any("DEPRECATED OPTION" in note and "asym" in note for note in cfg.notes)
    cfg = parse(MINIMAL_CLIENT + "comp-lzo no\nallow-compression no\n")
    assert (cfg.compression, cfg.compression_mode) == ("stub", "stub-only")
    assert parse(MINIMAL_CLIENT + "comp-noadapt\ncomp-lzo\n").compression == "lzo"


def test_compression_may_be_pushed(parse: Parse) -> None:
    cfg = parse(MINIMAL_SERVER + 'compress lz4-v2\npush "compress lz4-v2"\npush "comp-lzo no"\n')
    assert 'compress lz4-v2' in cfg.push_list and 'comp-lzo no' in cfg.push_list


def test_compress_no_is_accepted_with_a_note(parse: Parse) -> None:
    cfg = parse(MINIMAL_CLIENT + "compress no\n")
    assert not cfg.comp_lzo_stub and any("compress no" in note for note in cfg.notes)


def test_tls_options(parse: Parse) -> None:
    cfg = parse(
        MINIMAL_CLIENT + "tls-version-min 1.4 or-highest\ntls-version-max 1.3\n"
        "verify-x509-name 'C=DE, CN=server'\nreneg-sec 300 200\nhand-window 20\n"
        "tls-timeout 1\ntran-window 600\nreplay-window 128 30\nauth-nocache\n"
    )
    assert (cfg.tls_version_min, cfg.tls_version_max) == ("1.3", "1.3")
    assert (cfg.verify_x509_name, cfg.verify_x509_type) == ("C=DE, CN=server", "subject")
    assert (cfg.reneg_sec, cfg.reneg_sec_min, cfg.hand_window, cfg.tls_timeout) == (300, 200, 20, 1)
    assert (cfg.tran_window, cfg.replay_window, cfg.replay_seconds) == (600, 128, 30)
    assert cfg.auth_nocache


def test_dh_file_and_inline(parse: Parse, pki_dir: pytest.TempPathFactory) -> None:
    dh = "-----BEGIN DH PARAMETERS-----\nMIIBCAKCAQEA\n-----END DH PARAMETERS-----\n"
    cfg = parse(MINIMAL_SERVER + f"<dh>\n{dh}</dh>\n")
    assert cfg.dh == "inline"
    assert any("DH parameters are not used" in note for note in cfg.notes)


# -- process options ---------------------------------------------------------------------


def test_process_options(parse: Parse) -> None:
    cfg = parse(
        MINIMAL_SERVER + "user nobody\ngroup nogroup\nverb 0\nmute 20\nstatus /run/s.log\n"
        "status-version 2\nlog-append /var/log/t.log\npersist-tun\npersist-key\n"
        "explicit-exit-notify\nmax-clients 10\nduplicate-cn\nclient-to-client\nfloat\n"
        "fast-io\nsndbuf 0\nrcvbuf 524288\ntxqueuelen 1000\nscript-security 2\n"
        "connect-retry 5 60\nresolv-retry 30\nmute-replay-warnings\n"
    )
    assert (cfg.user, cfg.group, cfg.verb, cfg.mute) == ("nobody", "nogroup", 0, 20)
    assert (str(cfg.status_file), cfg.status_interval, cfg.status_version) == ("/run/s.log", 60, 2)
    assert (str(cfg.log_file), cfg.log_append) == ("/var/log/t.log", True)
    assert (cfg.persist_tun, cfg.persist_key, cfg.explicit_exit_notify) == (True, True, 1)
    assert (cfg.max_clients, cfg.duplicate_cn, cfg.client_to_client) == (10, True, True)
    assert (cfg.remote_float, cfg.fast_io, cfg.sndbuf, cfg.rcvbuf) == (True, True, 0, 524288)
    assert (cfg.txqueuelen, cfg.script_security) == (1000, 2)
    assert (cfg.connect_retry, cfg.connect_retry_max, cfg.resolv_retry) == (5, 60, 30)
    assert cfg.mute_replay_warnings


# -- ignore-unknown-option, setenv -------------------------------------------------------


def test_ignore_unknown_option(parse: Parse) -> None:
    cfg = parse(
        "ignore-unknown-option future-thing --block-outside-dns\n"
        + MINIMAL_CLIENT
        + "future-thing 1300\nblock-outside-dns\n<future-thing>\nx\n</future-thing>\n"
    )
    assert cfg.ignore_unknown_options == ["future-thing", "block-outside-dns"]
    assert [(item.line, item.name, item.reason) for item in cfg.ignored] == [
        (8, "future-thing", "ignore-unknown-option"),
        (9, "block-outside-dns", "ignore-unknown-option"),  # Windows-only: unknown on Linux
        (10, "future-thing", "ignore-unknown-option"),
    ]


def test_ignore_unknown_option_only_covers_later_lines(parse_error: ParseError) -> None:
    # As in OpenVPN: the option is checked when it is read.
    parse_error(
        MINIMAL_CLIENT + "future-thing 1300\nignore-unknown-option future-thing\n",
        7,
        "unsupported option 'future-thing'",
    )


def test_setenv_opt_and_forward_compatible(parse: Parse) -> None:
    cfg = parse(
        MINIMAL_CLIENT + "setenv opt block-outside-dns\nsetenv opt verb 5\n"
        "setenv FORWARD_COMPATIBLE 1\nsome-future-option x\nsetenv CLIENT_CERT 0\n"
    )
    assert cfg.verb == 5  # a known option behind `setenv opt` is applied normally
    assert [(item.name, item.reason) for item in cfg.ignored] == [
        ("block-outside-dns", "setenv opt"),
        ("some-future-option", "setenv FORWARD_COMPATIBLE 1"),
    ]
    assert cfg.ops.setenv == {"CLIENT_CERT": "0"}  # handed to scripts (issue 11)


def test_supported_options_cover_the_brief() -> None:
    wanted = set(
        """client tls-server tls-client pull dev dev-type proto port lport rport local remote
    remote-random nobind server server-ipv6 topology ifconfig ifconfig-pool ifconfig-ipv6
    ifconfig-ipv6-pool route route-ipv6 push ca cert key dh remote-cert-tls verify-x509-name
    data-ciphers ncp-ciphers data-ciphers-fallback cipher tun-mtu mssfix keepalive ping
    ping-restart ping-exit reneg-sec hand-window tls-timeout tran-window replay-window
    explicit-exit-notify persist-tun persist-key user group verb mute status status-version log
    ignore-unknown-option tls-version-min tls-version-max auth-nocache resolv-retry
    connect-retry max-clients duplicate-cn client-to-client float fast-io sndbuf rcvbuf
    txqueuelen script-security disable-dco auth key-direction tls-auth tls-crypt comp-lzo
    compress""".split()  # noqa: SIM905 (a word list reads better as text)
    )
    assert wanted <= set(SUPPORTED_OPTIONS)


# -- the lenient paths never skip an option OpenVPN knows (issue 11, item 9) ---------------

LENIENT_PREFIXES = [
    pytest.param("setenv FORWARD_COMPATIBLE 1\n", "", id="forward-compatible"),
    pytest.param("ignore-unknown-option ns-cert-type auth-user-pass fragment\n", "",
                 id="ignore-unknown-option"),
    pytest.param("", "setenv opt ", id="setenv-opt"),
]


@pytest.mark.parametrize(("prefix", "wrap"), LENIENT_PREFIXES)
@pytest.mark.parametrize(
    "line", ["fragment 1300", "mtu-test", "pkcs11-id x"]
)
def test_lenient_paths_never_skip_an_openvpn_option(
    parse_error: ParseError, prefix: str, wrap: str, line: str
) -> None:
    # Stock applies a known option whatever FORWARD_COMPATIBLE / ignore-unknown-option /
    # `setenv opt` say: skipping `ns-cert-type server` would lose the server-identity check.
    text = prefix + MINIMAL_CLIENT + wrap + line + "\n"
    error = parse_error(text, text.count("\n"), f"unsupported option {line.split()[0]!r}")
    assert "never skipped" in str(error)


@pytest.mark.parametrize(("prefix", "wrap"), LENIENT_PREFIXES)
@pytest.mark.parametrize("line", ["ns-cert-type server", "auth-user-pass"])
def test_lenient_paths_apply_or_refuse_the_security_options(
    parse: Parse, prefix: str, wrap: str, line: str
) -> None:
    # The example: FORWARD_COMPATIBLE used to drop these two silently. Whether or not
    # this tunnel implements them yet, they are applied (recorded as set) or the file refused.
    text = prefix + MINIMAL_CLIENT + wrap + line + "\n"
    try:
        cfg = parse(text)
    except ConfigError as error:
        assert "never skipped" in str(error) or "not supported" in str(error), error
        return
    name = line.split()[0]
    assert name not in [item.name for item in cfg.ignored]
    assert name in cfg.option_lines


@pytest.mark.parametrize(("prefix", "wrap"), LENIENT_PREFIXES)
def test_lenient_paths_still_skip_what_openvpn_does_not_know(
    parse: Parse, prefix: str, wrap: str
) -> None:
    prefix = prefix.replace("ns-cert-type", "a-future-option")
    cfg = parse(prefix + MINIMAL_CLIENT + wrap + "a-future-option x\nblock-outside-dns\n"
                .replace("\nblock", "\n" + (wrap or "setenv opt ") + "block"))
    assert [item.name for item in cfg.ignored] == ["a-future-option", "block-outside-dns"]


def test_stock_option_names_cover_the_security_options() -> None:
    from tunnel.config.stock_options import STOCK_OPTION_NAMES

    security = {"ns-cert-type", "auth-user-pass", "tls-auth", "tls-crypt", "verify-x509-name",
                "remote-cert-tls", "remote-cert-eku", "remote-cert-ku", "crl-verify",
                "tls-verify", "peer-fingerprint", "auth", "cipher", "fragment", "compress"}
    assert security <= STOCK_OPTION_NAMES
    assert "block-outside-dns" not in STOCK_OPTION_NAMES  # Windows-only: unknown on Linux
