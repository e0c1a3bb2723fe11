"""Whole configs that real OpenVPN 2.6 peers run with parse into the expected TunnelConfig.

Sources: OPENVPN-WIRE.md section 13 (the verified stock server/client), the benchmark anchors
(bench/ANCHOR-RESULTS.md, PEM paths pointed at a temporary PKI), and the sample configs shipped
with OpenVPN 2.6.14 (sample/sample-config-files/, comment lines trimmed).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from tests.config.conftest import Parse, ParseError
from tunnel.config import AddressPool, Remote, load_config, parse_config

WIRE_SERVER = """\
port 1194
proto udp
dev tun
topology subnet
server 10.8.0.0 255.255.255.0      # pushes route-gateway + topology, assigns 10.8.0.2...
ca   ca.crt
cert server.crt
key  server.key
dh none                              # ECDHE only; 2.6 needs either a dh file or "dh none"
keepalive 10 60                      # pushes "ping 10", "ping-restart 60"
data-ciphers AES-256-GCM:CHACHA20-POLY1305
tls-version-min 1.2                  # already the default; listed for clarity
# do NOT add: comp-lzo, compress, allow-compression yes
verb 4                               # 7 = key material, 9 = every packet
"""

WIRE_CLIENT = """\
client                               # = pull + tls-client
dev tun
proto udp
remote 10.77.0.1 1194
nobind
ca   ca.crt
cert client.crt
key  client.key
remote-cert-tls server               # Python server cert needs KU + EKU serverAuth + CN
data-ciphers AES-256-GCM:CHACHA20-POLY1305
verb 4
# optional: explicit-exit-notify 1   (EXIT control message if we push "protocol-flags cc-exit")
"""

ANCHOR_SERVER = """\
server 10.78.0.0 255.255.255.0
topology subnet
proto udp4
local 10.77.0.1
port 51820
dev tun
ca   $WORK/pki/ca.crt
cert $WORK/pki/server.crt
key  $WORK/pki/server.key
dh none
keepalive 10 60
data-ciphers {cipher}
disable-dco
verb 3
"""

ANCHOR_CLIENT = """\
client
proto udp4
remote 10.77.0.1 51820
nobind
dev tun
ca   $WORK/pki/ca.crt
cert $WORK/pki/client.crt
key  $WORK/pki/client.key
remote-cert-tls server
data-ciphers {cipher}
disable-dco
verb 3
"""

SAMPLE_CLIENT = """\
##############################################
# Sample client-side OpenVPN 2.0 config file #
##############################################
client
;dev tap
dev tun
;proto tcp
proto udp
remote my-server-1 1194
;remote my-server-2 1194
resolv-retry infinite
nobind
;user openvpn
persist-key
persist-tun
ca ca.crt
cert client.crt
key client.key
remote-cert-tls server
;tls-auth ta.key 1
verb 3
;mute 20
"""

SAMPLE_SERVER = """\
port 1194
proto udp
dev tun
ca ca.crt
cert server.crt
key server.key  # This file should be kept secret
dh dh2048.pem
topology subnet
server 10.8.0.0 255.255.255.0
ifconfig-pool-persist ipp.txt
keepalive 10 120
persist-key
persist-tun
status openvpn-status.log
verb 3
explicit-exit-notify 1
"""


def test_wire_doc_server(parse: Parse) -> None:
    cfg = parse(WIRE_SERVER)
    assert (cfg.role, cfg.mode, cfg.tls_server, cfg.pull) == ("server", "server", True, False)
    assert (cfg.dev, cfg.dev_type, cfg.topology, cfg.proto) == ("tun", "tun", "subnet", "udp")
    assert (cfg.lport, cfg.rport, cfg.bind_local) == (1194, 1194, True)
    assert cfg.server == IPv4Network("10.8.0.0/24")
    assert cfg.ifconfig == IPv4Interface("10.8.0.1/24")
    assert cfg.pool == AddressPool(
        IPv4Address("10.8.0.2"), IPv4Address("10.8.0.254"), IPv4Address("255.255.255.0")
    )
    # helper_keepalive(): the server restarts after twice what it pushes.
    assert (cfg.ping, cfg.ping_restart, cfg.push_ping, cfg.push_ping_restart) == (10, 120, 10, 60)
    assert cfg.push_list == [
        "route-gateway 10.8.0.1",
        "topology subnet",
        "ping 10",
        "ping-restart 60",
    ]
    assert cfg.data_ciphers == ["AES-256-GCM", "CHACHA20-POLY1305"]
    assert (cfg.dh, cfg.tls_version_min, cfg.verb) == ("none", "1.2", 4)
    assert cfg.ca_pem is not None and "BEGIN CERTIFICATE" in cfg.ca_pem
    assert cfg.key_pem is not None and "PRIVATE KEY" in cfg.key_pem
    assert cfg.ca_source == str(cfg.base_dir / "ca.crt")
    assert (cfg.tun_mtu, cfg.mssfix, cfg.mssfix_mode) == (1500, 1492, "mtu")
    assert (cfg.reneg_sec, cfg.hand_window, cfg.tls_timeout, cfg.tran_window) == (3600, 60, 2, 3600)
    assert (cfg.replay_window, cfg.replay_seconds, cfg.max_clients) == (64, 15, 1024)
    assert cfg.notes == [] and cfg.ignored == []


def test_wire_doc_client(parse: Parse) -> None:
    cfg = parse(WIRE_CLIENT)
    assert (cfg.role, cfg.mode, cfg.client, cfg.pull, cfg.tls_client) == (
        "client",
        "p2p",
        True,
        True,
        True,
    )
    assert cfg.remotes == [Remote("10.77.0.1", 1194, "udp")]
    assert (cfg.nobind, cfg.bind_local, cfg.remote_cert_tls) == (True, False, "server")
    assert (cfg.ping, cfg.ping_restart, cfg.push_ping) == (0, 0, None)  # the server pushes them
    assert cfg.push_list == []
    assert cfg.data_ciphers == ["AES-256-GCM", "CHACHA20-POLY1305"]
    assert cfg.explicit_exit_notify == 0


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "CHACHA20-POLY1305"])
def test_benchmark_anchor_configs(pki_dir: Path, cipher: str) -> None:
    work = pki_dir / "work"
    (work / "pki").mkdir(parents=True)
    for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key"):
        (work / "pki" / name).write_bytes((pki_dir / name).read_bytes())
    server_file, client_file = pki_dir / "server.conf", pki_dir / "client.conf"
    for path, template in ((server_file, ANCHOR_SERVER), (client_file, ANCHOR_CLIENT)):
        path.write_text(template.format(cipher=cipher).replace("$WORK", str(work)))

    server = load_config(server_file)
    assert (server.role, server.mode, server.proto, server.local) == (
        "server",
        "server",
        "udp4",
        "10.77.0.1",
    )
    assert (server.lport, server.disable_dco, server.data_ciphers) == (51820, True, [cipher])
    assert server.ifconfig == IPv4Interface("10.78.0.1/24")
    assert server.ca_source == str(work / "pki" / "ca.crt")
    assert server.source == str(server_file)

    client = load_config(client_file)
    assert client.remotes == [Remote("10.77.0.1", 51820, "udp4")]
    assert (client.role, client.bind_local, client.data_ciphers) == ("client", False, [cipher])


def test_openvpn_sample_client(parse: Parse) -> None:
    cfg = parse(SAMPLE_CLIENT)
    assert cfg.remotes == [Remote("my-server-1", 1194, "udp")]
    assert (cfg.resolv_retry, cfg.persist_key, cfg.persist_tun, cfg.verb) == (None, True, True, 3)


def test_openvpn_sample_server(parse: Parse, parse_error: ParseError, pki_dir: Path) -> None:
    (pki_dir / "dh2048.pem").write_text(
        "-----BEGIN DH PARAMETERS-----\nMIIBCAKCAQEA\n-----END DH PARAMETERS-----\n"
    )
    cfg = parse(SAMPLE_SERVER)  # ifconfig-pool-persist is supported since issue 11
    assert cfg.ops.ifconfig_pool_persist == pki_dir / "ipp.txt"
    assert cfg.ops.ifconfig_pool_persist_seconds == 600
    assert (cfg.ping, cfg.ping_restart, cfg.push_ping, cfg.push_ping_restart) == (10, 240, 10, 120)
    assert cfg.dh == str(pki_dir / "dh2048.pem")
    assert any("DH parameters are not used" in note for note in cfg.notes)
    assert cfg.status_file == pki_dir / "openvpn-status.log"
    assert cfg.explicit_exit_notify == 1


def test_unified_client_profile_with_inline_blocks(tmp_path: Path, pems: dict[str, str]) -> None:
    text = (
        "client\ndev tun\nproto udp\nremote vpn.example.com 1194\nremote 192.0.2.7 443 udp6\n"
        "nobind\nremote-cert-tls server\nverify-x509-name server name\n"
        f"<ca>\n{pems['ca.crt']}</ca>\n"
        f"<cert>\n{pems['client.crt']}</cert>\n"
        f"<key>\n{pems['client.key']}</key>\n"
        "data-ciphers aes-256-gcm:chacha20-poly1305\nverb 3\n"
    )
    path = tmp_path / "profile.ovpn"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.remotes == [Remote("vpn.example.com", 1194, "udp"), Remote("192.0.2.7", 443, "udp6")]
    assert (cfg.ca_pem, cfg.cert_pem, cfg.key_pem) == (
        pems["ca.crt"],
        pems["client.crt"],
        pems["client.key"],
    )
    assert (cfg.ca_source, cfg.cert_source, cfg.key_source) == ("inline", "inline", "inline")
    assert (cfg.verify_x509_name, cfg.verify_x509_type) == ("server", "name")
    assert cfg.data_ciphers == ["AES-256-GCM", "CHACHA20-POLY1305"]  # canonical spelling
    assert cfg.line_of("key") == text[: text.index("<key>")].count("\n") + 1


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, pems: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "openvpn"
    (conf_dir / "keys").mkdir(parents=True)
    for name in ("ca.crt", "client.crt", "client.key"):
        (conf_dir / "keys" / name).write_text(pems[name])
    (conf_dir / "client.conf").write_text(
        "client\ndev tun\nremote 192.0.2.1\nca keys/ca.crt\ncert keys/client.crt\n"
        "key keys/client.key\nstatus status.log 5\n"
    )
    monkeypatch.chdir(tmp_path)  # a working directory where keys/ca.crt does not exist
    cfg = load_config(Path("etc/openvpn/client.conf"))
    assert cfg.ca_source == str(conf_dir / "keys" / "ca.crt")
    assert cfg.status_file == conf_dir / "status.log" and cfg.status_interval == 5
    assert cfg.source == "etc/openvpn/client.conf"
    assert cfg.remotes == [Remote("192.0.2.1", 1194, "udp")]


def test_absolute_paths_are_kept(pki_dir: Path, tmp_path: Path) -> None:
    text = (
        f"client\ndev tun\nremote 192.0.2.1\nca {pki_dir / 'ca.crt'}\n"
        f'cert "{pki_dir / "client.crt"}"\nkey {pki_dir / "client.key"}\n'
    )
    cfg = parse_config(text, source="x.conf", base_dir=tmp_path / "elsewhere")
    assert cfg.cert_source == str(pki_dir / "client.crt")
