"""The option table, operations half: process, server operations, TLS knobs, scripts, routing.

Everything lands in ``TunnelConfig.ops`` (``model_ops.py``). Semantics are OpenVPN 2.6's
(``options.c: add_option()``); where a value is only checked later (a cipher list against
OpenSSL, a CRL file on every handshake) the handler checks what it can at its line.

Decisions worth knowing:

* ``crl-verify`` is read again on every verification, as stock does, so a file replaced while
  the server runs takes effect for the next handshake. It must exist when the config is read.
* ``remote-cert-ku`` without values (2.6) requires the keyUsage extension, any value.
* ``ns-cert-type`` is checked like stock's OpenSSL build: the certificate must be usable for the
  TLS server (client) purpose, i.e. the old Netscape type bit or the EKU serverAuth (clientAuth).
* ``peer-fingerprint`` accepts one fingerprint or an inline block with one per line (``#``
  comments allowed), SHA-256 in hex with colons, as 2.6 does.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.files import resolve_path
from tunnel.config.lexer import Directive
from tunnel.config.model import TunnelConfig
from tunnel.config.model_ops import HOOKS
from tunnel.config.registry import ParseContext, option
from tunnel.config.values import parse_choice, parse_int

__all__: list[str] = []

_INT_MAX = 2**31 - 1
_MAX_FILE_BYTES = 1 << 20


def _flag(name: str, attr: str) -> None:
    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        setattr(cfg.ops, attr, True)

    option(name)(handle)


def _nonempty(d: Directive, index: int = 0) -> str:
    if not d.args[index]:
        raise OptionProblem(f"option {quote(d.name)} needs a non-empty argument")
    return d.args[index]


# -- item 8: what the generators write besides the essentials -----------------------------

for _name, _attr in (
    ("ping-timer-rem", "ping_timer_rem"),
    ("push-peer-info", "push_peer_info"),
    ("disable-occ", "disable_occ"),
    ("tun-ipv6", "tun_ipv6"),
    ("machine-readable-output", "machine_readable_output"),
    ("persist-local-ip", "persist_local_ip"),
    ("persist-remote-ip", "persist_remote_ip"),
    ("ccd-exclusive", "ccd_exclusive"),
    ("tls-exit", "tls_exit"),
    ("up-restart", "up_restart"),
    ("up-delay", "up_delay"),
    ("down-pre", "down_pre"),
    ("route-nopull", "route_nopull"),
    ("route-noexec", "route_noexec"),
):
    _flag(_name, _attr)


@option("tun-mtu-extra", "N")
def _tun_mtu_extra(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.tun_mtu_extra = parse_int(d, 0, 0, 65535)


@option("route-delay", "[N [WINDOW]]")
def _route_delay(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    seconds = parse_int(d, 0, 0, _INT_MAX) if d.args else 0
    window = parse_int(d, 1, 0, _INT_MAX) if len(d.args) > 1 else 30  # stock's default
    cfg.ops.route_delay = (seconds, window)


# -- process ------------------------------------------------------------------------------


@option("syslog", "[PROGNAME]")
def _syslog(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.syslog = _nonempty(d) if d.args else "openvpn"


@option("daemon", "[PROGNAME]")
def _daemon(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.daemon = _nonempty(d) if d.args else "openvpn"


@option("writepid", "FILE")
def _writepid(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.writepid = resolve_path(ctx.base_dir, _nonempty(d))


@option("dev-node", "NODE")
def _dev_node(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    node = _nonempty(d)
    if node != "/dev/net/tun":
        raise OptionProblem(
            f"option 'dev-node': only the Linux clone device /dev/net/tun is supported, got "
            f"{quote(node)}"
        )
    cfg.ops.dev_node = node


# -- server operations --------------------------------------------------------------------


@option("crl-verify", "FILE [dir]", inline=True)
def _crl_verify(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if d.inline is not None:
        if "-----BEGIN X509 CRL-----" not in d.inline:
            raise OptionProblem("inline <crl-verify> block holds no PEM CRL (-----BEGIN X509 CRL)")
        cfg.ops.crl_inline, cfg.ops.crl_verify, cfg.ops.crl_is_dir = d.inline, None, False
        return
    path = resolve_path(ctx.base_dir, _nonempty(d))
    is_dir = len(d.args) > 1 and parse_choice(d, 1, ("dir",)) == "dir"
    if is_dir and not path.is_dir():
        raise OptionProblem(f"option 'crl-verify': {path} is not a directory")
    if not is_dir and not path.is_file():
        raise OptionProblem(f"option 'crl-verify': cannot read the CRL file {path}")
    cfg.ops.crl_verify, cfg.ops.crl_is_dir, cfg.ops.crl_inline = path, is_dir, None


@option("client-config-dir", "DIR")
def _client_config_dir(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.client_config_dir = resolve_path(ctx.base_dir, _nonempty(d))


@option("ifconfig-pool-persist", "FILE [SECONDS]")
def _ifconfig_pool_persist(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.ifconfig_pool_persist = resolve_path(ctx.base_dir, _nonempty(d))
    if len(d.args) > 1:
        cfg.ops.ifconfig_pool_persist_seconds = parse_int(d, 1, 0, _INT_MAX)


# -- TLS knobs ----------------------------------------------------------------------------


@option("tls-cipher", "LIST")
def _tls_cipher(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.tls_cipher = _nonempty(d)


@option("tls-ciphersuites", "LIST")
def _tls_ciphersuites(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.tls_ciphersuites = _nonempty(d)


@option("tls-groups", "LIST")
def _tls_groups(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.tls_groups = _nonempty(d)


@option("ecdh-curve", "NAME")
def _ecdh_curve(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.ecdh_curve = _nonempty(d)


@option("capath", "DIR")
def _capath(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    path = resolve_path(ctx.base_dir, _nonempty(d))
    if not path.is_dir():
        raise OptionProblem(f"option 'capath': {path} is not a directory")
    cfg.ops.capath = path


@option("pkcs12", "FILE", inline=True)
def _pkcs12(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if d.inline is not None:  # stock: an inline PKCS#12 bundle is base64 text
        try:
            data = base64.b64decode("".join(d.inline.split()), validate=True)
        except binascii.Error:
            raise OptionProblem("inline <pkcs12> block is not base64 text") from None
        cfg.ops.pkcs12, cfg.ops.pkcs12_source = data, "inline"
        _unpack_pkcs12(cfg, d, data)
        return
    path = resolve_path(ctx.base_dir, _nonempty(d))
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise OptionProblem(
            f"cannot read 'pkcs12' file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(data) > _MAX_FILE_BYTES:
        raise OptionProblem(f"'pkcs12' file {path} is larger than {_MAX_FILE_BYTES} bytes")
    cfg.ops.pkcs12, cfg.ops.pkcs12_source = data, str(path)
    _unpack_pkcs12(cfg, d, data)


def _unpack_pkcs12(cfg: TunnelConfig, d: Directive, data: bytes) -> None:
    # Stock: the bundle gives the certificate and key (with --cert/--key an error) and the CA
    # unless --ca is given as well.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    if cfg.cert_pem is not None or cfg.key_pem is not None:
        raise OptionProblem("option 'pkcs12' cannot be combined with 'cert' or 'key'")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, None)
    except (ValueError, TypeError) as exc:
        raise OptionProblem(
            f"option 'pkcs12': cannot read the bundle (password-protected bundles are not "
            f"supported): {exc}"
        ) from None
    if key is None or cert is None:
        raise OptionProblem("option 'pkcs12': the bundle holds no certificate with its key")
    pem = serialization.Encoding.PEM
    cfg.cert_pem = cert.public_bytes(pem).decode()
    cfg.key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    cfg.cert_source = cfg.key_source = "pkcs12"
    if cfg.ca_pem is None and extra:
        cfg.ca_pem = "".join(c.public_bytes(pem).decode() for c in extra)
        cfg.ca_source = "pkcs12"


@option("ns-cert-type", "server|client")
def _ns_cert_type(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.ns_cert_type = "server" if parse_choice(d, 0, ("server", "client")) == "server" \
        else "client"


@option("remote-cert-ku", "[HEX...]")
def _remote_cert_ku(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    values = []
    for index, text in enumerate(d.args):
        try:
            value = int(text, 16)
        except ValueError:
            raise OptionProblem(
                f"option 'remote-cert-ku': argument {index + 1} must be a hex keyUsage value "
                f"such as a0, got {quote(text)}"
            ) from None
        if not 0 < value <= 0xFFFF:
            raise OptionProblem(f"option 'remote-cert-ku': {quote(text)} is out of range")
        values.append(value)
    cfg.ops.remote_cert_ku = values or [0]  # [0]: the extension is required, any value


@option("remote-cert-eku", "OID")
def _remote_cert_eku(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.remote_cert_eku = _nonempty(d)


_FINGERPRINT = re.compile(r"^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$")


@option("peer-fingerprint", "SHA256", inline=True)
def _peer_fingerprint(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if d.inline is not None:
        words = [line.split("#", 1)[0].strip() for line in d.inline.splitlines()]
        texts = [word for word in words if word]
    else:
        texts = [d.args[0]]
    if not texts:
        raise OptionProblem("option 'peer-fingerprint': the inline block holds no fingerprint")
    for text in texts:
        if not _FINGERPRINT.match(text):
            raise OptionProblem(
                f"option 'peer-fingerprint': {quote(text)} is not a SHA-256 fingerprint "
                "(32 hex bytes separated by ':')"
            )
        cfg.ops.peer_fingerprints.append(bytes.fromhex(text.replace(":", "")))


# -- scripts ------------------------------------------------------------------------------


def _hook(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ops.scripts[d.name] = _nonempty(d)


for _hook_name in HOOKS:
    option(_hook_name, "COMMAND")(_hook)


# -- client routing -----------------------------------------------------------------------

_REDIRECT_FLAGS = ("local", "autolocal", "def1", "bypass-dhcp", "bypass-dns", "block-local",
                   "ipv6", "!ipv4")


@option("redirect-gateway", "[FLAG...]")
def _redirect_gateway(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    for index in range(len(d.args)):
        parse_choice(d, index, _REDIRECT_FLAGS)
    cfg.ops.redirect_gateway = tuple(d.args)


@option("pull-filter", "accept|ignore|reject TEXT")
def _pull_filter(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    action = parse_choice(d, 0, ("accept", "ignore", "reject"))
    kind: Literal["accept", "ignore", "reject"] = (
        "accept" if action == "accept" else "ignore" if action == "ignore" else "reject")
    cfg.ops.pull_filters.append((kind, d.args[1]))
