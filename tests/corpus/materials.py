"""Key material and helper files for the generator config corpus, made fresh by each test.

Each pair under `pairs/` names the files it needs the way its generator does (`ca.crt`,
`server.crt`, `crl.pem`, `ta.key`, `tc.key`, ...) relative to the peer's working directory.
`prepare(directory, ...)` writes every one of them into `directory`, and `render(text, ...)`
fills a config's placeholders (`@REMOTE@`, `@LOCAL@`, inline `@CA@`, `@CLIENT_CERT@`, ...).

What the generators make with easy-rsa and `openvpn --genkey` is made here with the same
tools where the format is OpenVPN's own (static keys, tls-crypt-v2 keys: the stock binary)
and with `cryptography` for X.509 (CA, server and client certificates, a CRL revoking a
third client "revoked", a PKCS#12 bundle) and OpenSSL for the FFDHE group file.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tunnel.pki import generate_pki_in_memory

__all__ = ["Materials", "make_materials", "prepare", "render"]

CLIENT_CN = "client"
REVOKED_CN = "revoked"
PKCS12_NAME = "pfSense-UDP4-1194-client.p12"

# Hook scripts the configs name. Each one appends its argv and environment to
# hook-<name>.env next to it (what a script sees is what item 5 of issue 11 is about) and
# succeeds; check-password.sh accepts exactly the credentials the test writes.
_HOOK = """#!/bin/sh
{{ echo "argv: $0 $*"; echo "argc: $#"; env | sort; echo; }} >> "$(dirname "$0")/hook-{name}.env"
exit 0
"""
HOOKS = ("ovpn-linkup", "ovpn-linkdown", "openvpn.attributes.sh", "ovpn_auth_verify",
         "tls-crypt-v2-verify.sh")
USERNAME, PASSWORD = "corpus-user", "corpus-password"
_CHECK_PASSWORD = f"""#!/bin/sh
{{ echo "argv: $0 $*"; env | sort; echo; }} >> "$(dirname "$0")/hook-check-password.env"
[ "$(sed -n 1p "$1")" = "{USERNAME}" ] && [ "$(sed -n 2p "$1")" = "{PASSWORD}" ]
"""


@dataclass(frozen=True)
class Materials:
    """PEM and key texts by name, shared by both peers of one pair."""

    files: dict[str, bytes]  # file name -> content, written into each peer's directory
    inline: dict[str, str]  # placeholder name (without @) -> text for an inline block


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _crl(ca_pem: bytes, ca_key_pem: bytes, revoked_pem: bytes) -> bytes:
    ca = x509.load_pem_x509_certificate(ca_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    revoked = x509.load_pem_x509_certificate(revoked_pem)
    now = datetime.datetime.now(datetime.UTC)
    entry = (x509.RevokedCertificateBuilder().serial_number(revoked.serial_number)
             .revocation_date(now - datetime.timedelta(minutes=5)).build())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(now - datetime.timedelta(hours=1))
           .next_update(now + datetime.timedelta(days=30))
           .add_revoked_certificate(entry)
           .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM)


def _fingerprint(cert_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _pkcs12(cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return pkcs12.serialize_key_and_certificates(
        b"client", key, x509.load_pem_x509_certificate(cert_pem),  # type: ignore[arg-type]
        [x509.load_pem_x509_certificate(ca_pem)], serialization.NoEncryption())


def _capath(ca_pem: bytes, directory: Path) -> None:
    """pfSense's `capath`: the CA under its OpenSSL subject hash, as c_rehash names it."""
    directory.mkdir()
    (directory / "ca.pem").write_bytes(ca_pem)
    out = subprocess.run(["openssl", "x509", "-noout", "-hash", "-in", str(directory / "ca.pem")],
                         capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    (directory / "ca.pem").rename(directory / f"{out}.0")


def make_materials(workdir: Path) -> Materials:
    """Everything any pair needs, made once per test in `workdir` (a scratch directory)."""
    pem = generate_pki_in_memory(server_cn="server", client_cns=[CLIENT_CN, REVOKED_CN], days=2)
    files: dict[str, bytes] = {name: pem[name] for name in (
        "ca.crt", "server.crt", "server.key", "client.crt", "client.key", "revoked.crt",
        "revoked.key")}
    files["crl.pem"] = _crl(pem["ca.crt"], pem["ca.key"], pem["revoked.crt"])
    files[PKCS12_NAME] = _pkcs12(pem["client.crt"], pem["client.key"], pem["ca.crt"])
    openvpn = shutil.which("openvpn") or "openvpn"
    scratch = workdir / "keys"
    scratch.mkdir(parents=True, exist_ok=True)
    _run("openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
         "-out", str(scratch / "dh.pem"))
    _run(openvpn, "--genkey", "secret", str(scratch / "ta.key"))
    _run(openvpn, "--genkey", "secret", str(scratch / "tc.key"))
    _run(openvpn, "--genkey", "tls-crypt-v2-server", str(scratch / "tc-v2-server.key"))
    _run(openvpn, "--tls-crypt-v2", str(scratch / "tc-v2-server.key"),
         "--genkey", "tls-crypt-v2-client", str(scratch / "tc-v2-client.key"))
    for name in ("dh.pem", "ta.key", "tc.key", "tc-v2-server.key"):
        files[name] = (scratch / name).read_bytes()
    files["dh2048.pem"] = files["dh.pem"]  # the samples' name
    files["tls-crypt.key"] = files["tc.key"]  # angristan's name for the same kind of key
    files["tls-crypt-v2.key"] = files["tc-v2-server.key"]
    files["credentials.txt"] = f"{USERNAME}\n{PASSWORD}\n".encode()
    inline = {
        "CA": pem["ca.crt"].decode().strip(),
        "CLIENT_CERT": pem["client.crt"].decode().strip(),
        "CLIENT_KEY": pem["client.key"].decode().strip(),
        "TA_KEY": files["ta.key"].decode().strip(),
        "TLS_CRYPT": files["tc.key"].decode().strip(),
        "TLS_CRYPT_V2_CLIENT": (scratch / "tc-v2-client.key").read_text().strip(),
        "SERVER_FINGERPRINT": _fingerprint(pem["server.crt"]),
        "CLIENT_FINGERPRINT": _fingerprint(pem["client.crt"]),
    }
    return Materials(files, inline)


def prepare(directory: Path, materials: Materials) -> None:
    """Write the key files, hook scripts and the directories the generators create."""
    directory.mkdir(parents=True, exist_ok=True)
    # Generators drop privileges (user nobody): what is read or run later must stay readable.
    directory.chmod(0o755)
    for name, content in materials.files.items():
        (directory / name).write_bytes(content)
        (directory / name).chmod(0o644)
    for name in HOOKS:
        _script(directory / name, _HOOK.format(name=name))
    _script(directory / "check-password.sh", _CHECK_PASSWORD)
    for sub in ("ccd", "csc"):
        (directory / sub).mkdir(exist_ok=True)
        (directory / sub).chmod(0o755)
    _capath(materials.files["ca.crt"], directory / "ca")


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | 0o444)


def render(text: str, materials: Materials, *, remote: str, local: str) -> str:
    """A corpus config with its placeholders filled in."""
    text = text.replace("@REMOTE@", remote).replace("@LOCAL@", local)
    for name, value in materials.inline.items():
        text = text.replace(f"@{name}@", value)
    left = re.findall(r"@([A-Z0-9_]+)@", text)
    if left:
        raise ValueError(f"unfilled placeholder(s) in a corpus config: {left}")
    return text
