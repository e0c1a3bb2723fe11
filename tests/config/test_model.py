"""TunnelConfig built by hand (as the demo and tests do) and its derived views."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from tunnel.config import AddressPool, IgnoredOption, Remote, TunnelConfig
from tunnel.config.checks import check_config
from tunnel.protocol.errors import ConfigError

PEM_CERT = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n"


def hand_built_client() -> TunnelConfig:
    return TunnelConfig(
        source="demo",
        role="client",
        pull=True,
        tls_client=True,
        dev="tun",
        dev_type="tun",
        remotes=[Remote("127.0.0.1", 1194, "udp")],
        ca_pem=PEM_CERT,
        cert_pem=PEM_CERT,
        key_pem=PEM_KEY,
    )


def test_hand_built_config_validates() -> None:
    check_config(hand_built_client())


def test_hand_built_config_errors_have_a_location() -> None:
    cfg = hand_built_client()
    cfg.ca_pem = None
    with pytest.raises(ConfigError, match=r"^demo:0: option 'ca' is missing"):
        check_config(cfg)


def test_defaults_match_openvpn() -> None:
    cfg = TunnelConfig()
    assert (cfg.tun_mtu, cfg.mssfix, cfg.mssfix_mode, cfg.topology) == (1500, 1492, "mtu", "subnet")
    assert cfg.data_ciphers == ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
    assert (cfg.reneg_sec, cfg.hand_window, cfg.tls_timeout, cfg.tran_window) == (3600, 60, 2, 3600)
    assert (cfg.replay_window, cfg.replay_seconds, cfg.explicit_exit_notify) == (64, 15, 0)
    assert (cfg.verb, cfg.status_interval, cfg.max_clients, cfg.lport) == (1, 60, 1024, 1194)
    assert TunnelConfig().data_ciphers is not cfg.data_ciphers  # no shared mutable default


def test_push_list_and_route_gateway() -> None:
    cfg = TunnelConfig(
        server=IPv4Network("10.8.0.0/24"),
        ifconfig=IPv4Interface("10.8.0.1/24"),
        pushes=["dhcp-option DNS 10.8.0.1"],
        push_ping=10,
        push_ping_restart=60,
    )
    assert cfg.route_gateway == IPv4Address("10.8.0.1")
    assert cfg.push_list == [
        "dhcp-option DNS 10.8.0.1",
        "route-gateway 10.8.0.1",
        "topology subnet",
        "ping 10",
        "ping-restart 60",
    ]


def test_small_value_types() -> None:
    assert AddressPool(IPv4Address("10.8.0.2"), IPv4Address("10.8.0.254")).size == 253
    item = IgnoredOption("c.ovpn", 12, "fragment", "ignore-unknown-option")
    assert str(item) == "c.ovpn:12: ignoring unsupported option 'fragment' (ignore-unknown-option)"
    assert "PRIVATE" not in repr(hand_built_client())  # keys stay out of logs
