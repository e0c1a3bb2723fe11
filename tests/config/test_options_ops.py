"""The operations half of the option table (options_ops.py, issue 11 part B)."""

from __future__ import annotations

from pathlib import Path

from tests.config.conftest import MINIMAL_CLIENT, MINIMAL_SERVER, Parse, ParseError


def test_generator_extras_parse(parse: Parse, pki_dir: Path) -> None:
    (pki_dir / "ccd").mkdir()
    cfg = parse(
        MINIMAL_SERVER + "ping-timer-rem\ntun-mtu-extra 32\ndisable-occ\ntun-ipv6\n"
        "machine-readable-output\nsyslog myvpn\nwritepid vpn.pid\n"
        "dev-node /dev/net/tun\nclient-config-dir ccd\nccd-exclusive\n"
        "ifconfig-pool-persist ipp.txt 30\npersist-local-ip\npersist-remote-ip\n"
        "setenv PUSH_PEER_INFO\nsetenv opt tls-version-min 1.0 or-highest\n"
    )
    ops = cfg.ops
    assert (ops.ping_timer_rem, ops.tun_mtu_extra, ops.disable_occ, ops.tun_ipv6) == (
        True, 32, True, True)
    assert ops.machine_readable_output and ops.route_delay is None
    assert (ops.syslog, ops.writepid, ops.dev_node) == ("myvpn", pki_dir / "vpn.pid",
                                                        "/dev/net/tun")
    assert (ops.client_config_dir, ops.ccd_exclusive) == (pki_dir / "ccd", True)
    assert (ops.ifconfig_pool_persist, ops.ifconfig_pool_persist_seconds) == (
        pki_dir / "ipp.txt", 30)
    assert ops.push_peer_info and ops.setenv == {"PUSH_PEER_INFO": ""}
    assert cfg.tls_version_min == "1.0"  # or-highest only replaces a version unknown here


def test_client_only_options(parse: Parse, parse_error: ParseError) -> None:
    assert parse(MINIMAL_CLIENT + "route-delay 5\n").ops.route_delay == (5, 30)
    assert parse(MINIMAL_CLIENT + "route-delay\n").ops.route_delay == (0, 30)
    assert parse(MINIMAL_CLIENT + "route-delay 2 10\n").ops.route_delay == (2, 10)
    for line, words in (("route-delay 5", "--route-delay cannot be used with --mode server"),
                        ("up-delay", "--up-delay cannot be used with --mode server"),
                        ("ipchange ./x", "--ipchange cannot be used with --mode server"),
                        ("redirect-gateway def1", "--redirect-gateway cannot be used")):
        text = MINIMAL_SERVER + line + "\n"
        parse_error(text, text.count("\n"), words)
    assert parse(MINIMAL_CLIENT + "up-delay\nipchange ./x\n").ops.up_delay


def test_tls_knobs_parse(parse: Parse, pki_dir: Path) -> None:
    (pki_dir / "capath").mkdir()
    cfg = parse(
        MINIMAL_CLIENT + "tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256\n"
        "tls-ciphersuites TLS_AES_256_GCM_SHA384\ntls-groups X25519:prime256v1\n"
        "ecdh-curve secp384r1\ncapath capath\nns-cert-type server\nremote-cert-ku a0 88\n"
        'remote-cert-eku "TLS Web Server Authentication"\n'
    )
    ops = cfg.ops
    assert ops.tls_cipher == "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"
    assert (ops.tls_groups, ops.ecdh_curve, ops.capath) == (
        "X25519:prime256v1", "secp384r1", pki_dir / "capath")
    assert (ops.ns_cert_type, ops.remote_cert_ku) == ("server", [0xA0, 0x88])
    assert ops.remote_cert_eku == "TLS Web Server Authentication"
    assert parse(MINIMAL_CLIENT + "remote-cert-ku\n").ops.remote_cert_ku == [0]


def test_bad_values_are_errors_at_their_line(parse_error: ParseError, pki_dir: Path) -> None:
    parse_error(MINIMAL_CLIENT + "remote-cert-ku zz\n", 7, "hex keyUsage value")
    parse_error(MINIMAL_CLIENT + "dev-node /dev/tun1\n", 7, "/dev/net/tun")
    parse_error(MINIMAL_SERVER + "crl-verify missing.pem\n", 8, "cannot read the CRL file")
    parse_error(MINIMAL_SERVER + "crl-verify ca.crt dir\n", 8, "not a directory")
    parse_error(MINIMAL_CLIENT + "ns-cert-type peer\n", 7, "ns-cert-type")
    parse_error(MINIMAL_CLIENT + "peer-fingerprint 00:11\n", 7, "not a SHA-256 fingerprint")
    parse_error(MINIMAL_CLIENT + "pull-filter drop route\n", 7, "pull-filter")


def test_pkcs12_gives_cert_key_and_ca(tmp_path: Path, pems: dict[str, str], parse: Parse,
                                      pki_dir: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key(pems["client.key"].encode(), None)
    bundle = pkcs12.serialize_key_and_certificates(
        b"c", key, x509.load_pem_x509_certificate(pems["client.crt"].encode()),  # type: ignore[arg-type]
        [x509.load_pem_x509_certificate(pems["ca.crt"].encode())],
        serialization.NoEncryption())
    (pki_dir / "client.p12").write_bytes(bundle)
    cfg = parse("client\ndev tun\nremote 192.0.2.1\npkcs12 client.p12\n")
    assert cfg.cert_source == cfg.key_source == cfg.ca_source == "pkcs12"
    assert x509.load_pem_x509_certificate(cfg.cert_pem.encode()) == \
        x509.load_pem_x509_certificate(pems["client.crt"].encode())  # type: ignore[union-attr]
