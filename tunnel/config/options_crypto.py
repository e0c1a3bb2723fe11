"""The option table, TLS half: certificates, TLS knobs, data ciphers, compression, replay.

Decisions worth knowing:

* ``dh none`` is what an ECDHE-only server wants. A DH file is still accepted (stock 2.6 servers
  need one of the two, so existing configs have it): it must exist and hold DH parameters, as
  stock OpenVPN would insist, but it is not used, and a note says so. A server without any
  ``dh`` line is accepted too (stock 2.6 refuses it); we never use DH parameters.
* ``secret`` (static-key mode) is refused with a clear message, whatever its arguments, and
  ``ignore-unknown-option`` cannot skip it. ``tls-auth``, ``tls-crypt``, ``tls-crypt-v2`` and
  ``key-direction`` are in ``options_wrap.py``.
* Compression as 2.6/2.7: ``comp-lzo [yes|no|adaptive]`` and ``compress [ALG]`` choose a
  framing kind (``compress.py``) that the data channel honours; nothing is ever compressed on
  send. ``allow-compression`` (``asym``; ``yes`` is read as ``asym`` like 2.7; unset with a
  real algorithm is ``asym`` too, like 2.6) lets compressed packets from the peer be
  decompressed; ``no`` with a real algorithm is an error, as stock. ``compress no`` (which
  stock rejects as a bad algorithm) is accepted as the absence of compression, with a note.
* Ciphers as 2.6 treats them: ``data-ciphers`` (or ``ncp-ciphers``) is the negotiation list
  and may hold CBC entries; ``cipher X`` only matters for poor man's NCP and as the fallback's
  name (``data-ciphers-fallback X`` sets both, as in options.c; the last of the two wins);
  ``auth DIGEST`` is the HMAC of tls-auth and of a CBC data channel (SHA1 by default; AEAD
  data ciphers ignore it, as stock does, silently). ``cipher none``/``auth none`` would run
  without encryption or authentication: refused.
"""

from __future__ import annotations

from tunnel.config.ciphers import (
    AUTH_DIGESTS,
    SUPPORTED_DATA_CIPHERS,
    canonical_cipher,
    read_cipher_list,
)
from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.files import CERTIFICATE, DH_PARAMETERS, PRIVATE_KEY, read_pem
from tunnel.config.lexer import Directive
from tunnel.config.model import TunnelConfig, X509NameType
from tunnel.config.registry import Handler, ParseContext, flag_option, number_option, option
from tunnel.config.values import parse_choice, parse_int
from tunnel.protocol.compress import NON_STUB_KINDS, compression_kind

__all__: list[str] = []

_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
_X509_TYPES: dict[str, X509NameType] = {
    "subject": "subject",
    "name": "name",
    "name-prefix": "name-prefix",
}
_INT_MAX = 2**31 - 1
_SUPPORTED = ", ".join(SUPPORTED_DATA_CIPHERS)


# -- certificates -----------------------------------------------------------------------


@option("ca", "FILE", inline=True)
def _ca(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    pem = read_pem(d, ctx.base_dir, CERTIFICATE)
    cfg.ca_pem, cfg.ca_source = pem.text, pem.source


@option("cert", "FILE", inline=True)
def _cert(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    pem = read_pem(d, ctx.base_dir, CERTIFICATE)
    cfg.cert_pem, cfg.cert_source = pem.text, pem.source


@option("key", "FILE", inline=True)
def _key(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    pem = read_pem(d, ctx.base_dir, PRIVATE_KEY)
    cfg.key_pem, cfg.key_source = pem.text, pem.source


@option("dh", "none|FILE", inline=True)
def _dh(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if d.inline is None and d.args[0] == "none":
        cfg.dh = "none"
        return
    cfg.dh = read_pem(d, ctx.base_dir, DH_PARAMETERS).source
    cfg.note("dh", "DH parameters are not used: the TLS layer offers ECDHE only ('dh none')")


# -- peer verification and TLS ----------------------------------------------------------


@option("remote-cert-tls", "server|client")
def _remote_cert_tls(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    wanted = parse_choice(d, 0, ("server", "client"))
    cfg.remote_cert_tls = "server" if wanted == "server" else "client"


@option("verify-x509-name", "NAME [subject|name|name-prefix]")
def _verify_x509_name(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if not d.args[0]:
        raise OptionProblem("option 'verify-x509-name' needs a non-empty name")
    kind = "subject"
    if len(d.args) > 1:
        kind = parse_choice(d, 1, ("subject", "name", "name-prefix"))
    cfg.verify_x509_name = d.args[0]
    cfg.verify_x509_type = _X509_TYPES[kind]


@option("tls-version-min", "1.0|1.1|1.2|1.3 [or-highest]")
def _tls_version_min(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    or_highest = len(d.args) > 1 and parse_choice(d, 1, ("or-highest",)) == "or-highest"
    if or_highest and d.args[0] not in _TLS_VERSIONS:
        cfg.tls_version_min = _TLS_VERSIONS[-1]  # ssl.c: tls_version_parse()
        return
    cfg.tls_version_min = parse_choice(d, 0, _TLS_VERSIONS)


@option("tls-version-max", "1.0|1.1|1.2|1.3")
def _tls_version_max(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.tls_version_max = parse_choice(d, 0, _TLS_VERSIONS)


@option("reneg-sec", "SECONDS [MIN_SECONDS]")
def _reneg_sec(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.reneg_sec = parse_int(d, 0, 0, _INT_MAX)
    cfg.reneg_sec_min = parse_int(d, 1, 0, cfg.reneg_sec) if len(d.args) > 1 else None


number_option("hand-window", "hand_window", 1, _INT_MAX)
number_option("tls-timeout", "tls_timeout", 1, _INT_MAX)
number_option("tran-window", "tran_window", 1, _INT_MAX)
flag_option("auth-nocache", "auth_nocache")


# -- data channel -----------------------------------------------------------------------


def _data_ciphers(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if "none" in (item.lstrip("?").lower() for item in d.args[0].split(":")):
        raise OptionProblem(
            f"option {quote(d.name)}: cipher 'none' would send the tunnelled data in clear "
            "text; it is not supported"
        )
    chosen, missing, skipped = read_cipher_list(d.args[0])
    if missing:
        raise OptionProblem(
            f"option {quote(d.name)}: Unsupported cipher in --data-ciphers: {missing[0]} "
            f"(supported: {_SUPPORTED})"
        )
    if not chosen:
        raise OptionProblem(
            f"option {quote(d.name)} leaves no usable cipher (supported: {_SUPPORTED})"
        )
    # Later checks speak of 'data-ciphers', whichever spelling the file used.
    cfg.option_lines["data-ciphers"] = d.line
    for name in skipped:
        cfg.note("data-ciphers", f"Unsupported optional cipher in --data-ciphers: {name}")
    if d.name == "ncp-ciphers":
        cfg.note(
            "ncp-ciphers",
            "Note: Treating option '--ncp-ciphers' as '--data-ciphers' (renamed in OpenVPN 2.5).",
        )
    cfg.data_ciphers = chosen


option("data-ciphers", "CIPHER[:CIPHER...]")(_data_ciphers)
option("ncp-ciphers", "CIPHER[:CIPHER...]")(_data_ciphers)


def _fallback_cipher(d: Directive, name: str) -> str:
    canonical = canonical_cipher(name)
    if canonical is None:
        if name.lower() == "none":
            raise OptionProblem(
                f"option {quote(d.name)}: cipher 'none' (no encryption) is not supported"
            )
        raise OptionProblem(
            f"option {quote(d.name)}: cipher {quote(name)} is not supported as the "
            f"data-ciphers-fallback (supported: {_SUPPORTED})"
        )
    return canonical


@option("data-ciphers-fallback", "CIPHER")
def _data_ciphers_fallback(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # options.c: sets --cipher too and enables the fallback.
    cfg.data_ciphers_fallback = _fallback_cipher(d, d.args[0])
    cfg.cipher = cfg.data_ciphers_fallback


@option("cipher", "CIPHER")
def _cipher(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # Legacy: 2.6 negotiates from data-ciphers and only warns about `cipher` (the expansion
    # step adds stock's notes), but after `data-ciphers-fallback` it renames the fallback.
    if cfg.data_ciphers_fallback is not None:
        cfg.data_ciphers_fallback = _fallback_cipher(d, d.args[0])
    if d.args[0].lower() == "none":
        raise OptionProblem("option 'cipher none' (no encryption) is not supported")
    cfg.cipher = canonical_cipher(d.args[0]) or d.args[0].upper()


@option("auth", "DIGEST")
def _auth(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    name = d.args[0].upper().replace("-", "")  # SHA-256 = SHA256, as OpenSSL
    if name == "NONE":
        raise OptionProblem(
            "option 'auth none' (data packets without authentication) is not supported"
        )
    if name not in AUTH_DIGESTS:
        raise OptionProblem(
            f"option 'auth': digest {quote(d.args[0])} is not supported "
            f"(supported: {', '.join(AUTH_DIGESTS)})"
        )
    cfg.auth = name


# -- compression framing (tunnel/protocol/compress.py) ----------------------------------


def _set_compression(cfg: TunnelConfig, d: Directive) -> None:
    try:
        kind = compression_kind(d.name, d.args[0] if d.args else None)
    except ValueError as exc:
        raise OptionProblem(f"option {quote(d.name)}: {exc}") from None
    if kind in NON_STUB_KINDS and cfg.allow_compression == "no":
        # comp.c: check_compression_settings_valid() with allow-compression no (stub-only).
        raise OptionProblem(
            f"option {quote(d.name)}: Compression is not allowed since allow-compression is "
            "set to 'no'"
        )
    cfg.compression = kind
    cfg.comp_lzo_stub = kind == "stub"
    cfg.option_lines["compression"] = d.line


@option("comp-lzo", "[yes|no|adaptive]")
def _comp_lzo(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _set_compression(cfg, d)


@option("compress", "[lz4|lz4-v2|lzo|stub|stub-v2]")
def _compress(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if d.args == ("no",):
        cfg.note(
            "compress",
            "'compress no' accepted as no compression (stock OpenVPN rejects it; drop the line)",
        )
        return
    _set_compression(cfg, d)


@option("comp-noadapt")
def _comp_noadapt(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    """A no-op in stock 2.6+ too: nothing is ever compressed, so nothing adapts."""


@option("allow-compression", "yes|no|asym")
def _allow_compression(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    mode = parse_choice(d, 0, ("yes", "no", "asym"))
    if mode == "no":
        if cfg.compression in NON_STUB_KINDS:
            raise OptionProblem(
                "option 'allow-compression': '--allow-compression no' conflicts with enabling "
                "compression"
            )
    elif cfg.allow_compression == "no":
        raise OptionProblem(
            f"option 'allow-compression': Cannot set allow-compression to '{mode}' after set "
            "to 'no'"
        )
    elif mode == "yes":
        cfg.note(
            "allow-compression",
            "DEPRECATED OPTION: \"--allow-compression yes\" has been removed. We will use "
            "\"asym\" mode instead (packets are decompressed, never compressed).",
        )
    cfg.allow_compression = mode


@option("replay-window", "N [SECONDS]")
def _replay_window(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.replay_window = parse_int(d, 0, 0, 65536)  # packet_id.h: MIN/MAX_SEQ_BACKTRACK
    if len(d.args) > 1:
        cfg.replay_seconds = parse_int(d, 1, 0, 600)  # MIN/MAX_TIME_BACKTRACK


flag_option("mute-replay-warnings", "mute_replay_warnings")


# -- refused: control-channel protection and static keys --------------------------------


def _refuse(what: str) -> Handler:
    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        raise OptionProblem(
            f"option {quote(d.name)} is not supported: {what}; remove it here and on the peer "
            "(it cannot be skipped with ignore-unknown-option)"
        )

    return handle


for _name, _why in (
    ("secret", "static-key mode is not supported, only TLS"),
):
    option(_name, "...", inline=True, any_arity=True)(_refuse(_why))
