"""tunnel.pki: the generated PKI follows the verified recipe and loads into ssl contexts."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tunnel.pki import PkiPaths, generate_pki, generate_pki_in_memory


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    return generate_pki_in_memory(client_cns=("alice", "bob"))


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _cn(cert: x509.Certificate) -> str:
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_in_memory_file_names(pems: dict[str, bytes]) -> None:
    assert set(pems) == {
        "ca.crt", "ca.key", "server.crt", "server.key",
        "alice.crt", "alice.key", "bob.crt", "bob.key",
    }  # fmt: skip


def test_ca_follows_recipe(pems: dict[str, bytes]) -> None:
    ca = _cert(pems["ca.crt"])
    assert _cn(ca) == "pyovpn CA"
    assert ca.issuer == ca.subject
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert isinstance(ca_key.curve, ec.SECP256R1)
    assert ca.signature_hash_algorithm is not None
    assert ca.signature_hash_algorithm.name == "sha256"


@pytest.mark.parametrize(
    ("name", "cn", "eku", "key_encipherment"),
    [
        ("server", "server", ExtendedKeyUsageOID.SERVER_AUTH, True),
        ("alice", "alice", ExtendedKeyUsageOID.CLIENT_AUTH, False),
        ("bob", "bob", ExtendedKeyUsageOID.CLIENT_AUTH, False),
    ],
)
def test_leaf_follows_recipe(
    pems: dict[str, bytes],
    name: str,
    cn: str,
    eku: x509.ObjectIdentifier,
    key_encipherment: bool,
) -> None:
    ca = _cert(pems["ca.crt"])
    leaf = _cert(pems[f"{name}.crt"])
    assert _cn(leaf) == cn
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert ku.key_encipherment is key_encipherment
    assert not ku.key_cert_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    assert isinstance(leaf_key.curve, ec.SECP256R1)
    key = serialization.load_pem_private_key(pems[f"{name}.key"], password=None)
    assert key.public_key() == leaf.public_key()
    assert pems[f"{name}.key"].startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, clear


def test_days_sets_validity() -> None:
    pems = generate_pki_in_memory(days=10)
    cert = _cert(pems["server.crt"])
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    # 10 days plus the one-hour clock-skew allowance at the start.
    assert 10 * 86400 <= lifetime.total_seconds() <= 10 * 86400 + 3600 + 5


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "ca", "server"])
def test_rejects_client_names_unusable_as_files(bad: str) -> None:
    with pytest.raises(ValueError):
        generate_pki_in_memory(client_cns=(bad,))


def test_rejects_duplicate_client_names_and_bare_string() -> None:
    with pytest.raises(ValueError, match="twice"):
        generate_pki_in_memory(client_cns=("a", "a"))
    with pytest.raises(TypeError):
        generate_pki_in_memory(client_cns="client")


def test_rejects_cn_longer_than_64() -> None:
    with pytest.raises(ValueError):
        generate_pki_in_memory(server_cn="x" * 65)


@pytest.fixture
def written(tmp_path: Path) -> PkiPaths:
    return generate_pki(tmp_path / "pki", client_cns=("client", "laptop"), days=30)


def test_generate_pki_writes_files(written: PkiPaths, tmp_path: Path) -> None:
    out = tmp_path / "pki"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ca.crt", "server.crt", "server.key", "client.crt", "client.key",
         "laptop.crt", "laptop.key"]
    )  # fmt: skip
    assert not (out / "ca.key").exists()  # the CA key is deliberately not persisted
    assert written.ca_cert == out / "ca.crt"
    assert written.server_cert == out / "server.crt"
    assert written.server_key == out / "server.key"
    assert written.clients == {
        "client": (out / "client.crt", out / "client.key"),
        "laptop": (out / "laptop.crt", out / "laptop.key"),
    }
    assert _mode(out) == 0o700


def test_key_files_are_0600(written: PkiPaths) -> None:
    keys = [written.server_key] + [key for _, key in written.clients.values()]
    for key in keys:
        assert _mode(key) == 0o600, key
    assert _mode(written.ca_cert) == 0o644


def test_files_load_into_ssl_contexts_and_handshake(written: PkiPaths) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(written.server_cert, written.server_key)
    server.load_verify_locations(written.ca_cert)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(written.ca_cert)
    cert, key = written.clients["laptop"]
    client.load_cert_chain(cert, key)

    # A real handshake proves both chains verify under OpenSSL's default security level.
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, obj in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    peer = s.getpeercert()
    assert peer is not None
    assert peer["subject"] == ((("commonName", "laptop"),),)


@pytest.mark.openssl
def test_openssl_verify_accepts_chain(written: PkiPaths) -> None:
    for leaf, purpose in [
        (written.server_cert, "sslserver"),
        (written.clients["client"][0], "sslclient"),
    ]:
        result = subprocess.run(
            ["openssl", "verify", "-purpose", purpose, "-CAfile", str(written.ca_cert),
             str(leaf)],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().endswith(": OK")


def test_refuses_to_overwrite(written: PkiPaths, tmp_path: Path) -> None:
    out = tmp_path / "pki"
    before = written.server_key.read_bytes()
    with pytest.raises(FileExistsError, match=r"ca\.crt"):
        generate_pki(out, client_cns=("other",))
    assert written.server_key.read_bytes() == before
    assert not (out / "other.crt").exists()  # refused before writing anything


def test_refusal_names_the_existing_file(tmp_path: Path) -> None:
    tmp_path.joinpath("client.key").write_text("precious")
    with pytest.raises(FileExistsError, match=r"client\.key"):
        generate_pki(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.key"]


def test_overwrite_replaces_and_tightens_modes(written: PkiPaths, tmp_path: Path) -> None:
    written.server_key.chmod(0o644)
    before = written.server_key.read_bytes()
    again = generate_pki(tmp_path / "pki", client_cns=("client", "laptop"), overwrite=True)
    assert again.server_key.read_bytes() != before
    assert _mode(again.server_key) == 0o600
    assert not [p for p in (tmp_path / "pki").iterdir() if p.name.endswith(".tmp")]
