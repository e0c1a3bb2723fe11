"""Control-channel texts: the OCC options string, peer-info and NCP, PUSH_REPLY, message framing.

Everything a peer says in words rather than in packets (wire doc 6.1-6.3 and 10):

* the options ("OCC") string inside key-method 2 (`options.c: options_string()`);
* the client's peer-info lines and IV_PROTO bits (`ssl.c: push_peer_info()`), and the server's
  cipher choice from them (`ssl_ncp.c: ncp_get_best_cipher()`);
* PUSH_REPLY building (`push.c: send_push_reply()`) and parsing (`options.c:
  apply_push_options()` + `add_option()`);
* NUL-terminated control messages after key-method 2 (`ssl_pkt.c: extract_command_buffer()`,
  `forward.c: parse_incoming_control_channel_command()`).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from tunnel.protocol.compress import compression_kind
from tunnel.protocol.errors import ProtocolError

__all__ = [
    "IV_PROTO_AUTH_FAIL_TEMP",
    "IV_PROTO_AUTH_PENDING_KW",
    "IV_PROTO_CC_EXIT_NOTIFY",
    "IV_PROTO_DATA_V2",
    "IV_PROTO_DNS_OPTION",
    "IV_PROTO_DYN_TLS_CRYPT",
    "IV_PROTO_NCP_P2P",
    "IV_PROTO_REQUEST_PUSH",
    "IV_PROTO_TLS_KEY_EXPORT",
    "MAX_CONTROL_MESSAGE",
    "OUR_IV_PROTO",
    "PUSH_BUNDLE_SIZE",
    "ControlMessageReader",
    "PushOptions",
    "build_peer_info",
    "build_push_reply",
    "classify_control_message",
    "encode_control_message",
    "max_pushed_option",
    "negotiate_cipher",
    "options_string",
    "options_string_value",
    "parse_peer_info",
    "parse_push_reply",
    "peer_info_int",
]

# --- the options string (wire doc 6.1) ------------------------------------------------------

_ROLE_WORDS = {"client": "tls-client", "server": "tls-server",
               "tls-client": "tls-client", "tls-server": "tls-server"}
# socket.c: proto_remote(); TCP is "TCPv4_*" whatever the family, as stock writes it.
_PROTOS = ("UDPv4", "UDPv6", "TCPv4_CLIENT", "TCPv4_SERVER")


def options_string(
    *,
    role: str,
    proto: str = "UDPv4",
    tun_mtu: int = 1500,
    link_mtu: int = 1541,
    cipher: str | None = None,
    auth: str = "SHA1",
    keysize: int = 128,
    comp_lzo: bool = False,
) -> str:
    """The OCC options string as stock 2.6 builds it (`options_string.c: options_string()`).

    `cipher` is the configured `cipher`/`data-ciphers-fallback` when it is in data-ciphers
    (stock announces it only then; the default placeholder BF-CBC never is); `auth` is the
    digest for a CBC cipher or the BF-CBC placeholder, "[null-digest]" for AEAD; `keysize` the
    cipher's key bits (128 for the placeholder). A peer's `cipher` entry is what poor man's NCP
    reads. `comp_lzo` announces a compression context (`comp-lzo`/`compress` configured).
    Mismatches only produce warnings on the peer.
    """
    if role not in _ROLE_WORDS:
        raise ValueError(f"role must be 'client' or 'server', not {role!r}")
    if proto not in _PROTOS:
        raise ValueError(f"proto must be one of {_PROTOS}, not {proto!r}")
    parts = [f"V4,dev-type tun,link-mtu {link_mtu},tun-mtu {tun_mtu},proto {proto}"]
    if comp_lzo:
        parts.append("comp-lzo")
    if cipher is not None:
        parts.append(f"cipher {_cipher_name(cipher)}")
    parts.append(f"auth {auth},keysize {keysize},key-method 2,{_ROLE_WORDS[role]}")
    return ",".join(parts)


def options_string_value(options: str, name: str) -> str | None:
    """The argument of `name` in a peer's options string (`options_string_extract_option`)."""
    for item in options.split(","):
        word, _, value = item.partition(" ")
        if word == name:
            return value or None
    return None


# --- peer-info and IV_PROTO (wire doc 6.2, 6.3; ssl.h) --------------------------------------

IV_PROTO_DATA_V2 = 2
IV_PROTO_REQUEST_PUSH = 4
IV_PROTO_TLS_KEY_EXPORT = 8
IV_PROTO_AUTH_PENDING_KW = 16
IV_PROTO_NCP_P2P = 32
IV_PROTO_DNS_OPTION = 64
IV_PROTO_CC_EXIT_NOTIFY = 128
IV_PROTO_AUTH_FAIL_TEMP = 256
IV_PROTO_DYN_TLS_CRYPT = 512

# 406. Never TLS_KEY_EXPORT (8): a server seeing it pushes `key-derivation tls-ekm` and derives
# the data keys with RFC 5705 EKM, which the stdlib ssl module cannot export - every data packet
# would then fail to decrypt. DYN_TLS_CRYPT (512) is added by build_peer_info only where
# tunnel/protocol/ekm.py reaches OpenSSL's exporter (wrap/dynamic.py). NCP_P2P (32) is for p2p
# mode only, and DNS_OPTION (64) would promise that we parse the pushed `dns` option, which we
# do not.
OUR_IV_PROTO = (IV_PROTO_DATA_V2 | IV_PROTO_REQUEST_PUSH | IV_PROTO_AUTH_PENDING_KW
                | IV_PROTO_CC_EXIT_NOTIFY | IV_PROTO_AUTH_FAIL_TEMP)

_CIPHER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PEER_INFO_NAME = re.compile(r"[A-Za-z0-9_]+")  # misc.c: validate_peer_info_line()
_LEADING_INT = re.compile(r"\s*([+-]?[0-9]{1,10})")


def _cipher_name(name: str) -> str:
    if not _CIPHER_NAME.fullmatch(name):
        raise ValueError(f"not a cipher name: {name!r}")
    return name.upper()


def build_peer_info(
    *,
    ciphers: Sequence[str],
    version: str,
    tun_mtu_max: int = 1600,
    platform: str = "linux",
    compression: str | None = None,
    dyn_tls_crypt: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """The client's peer-info, in stock's line order (`ssl.c: push_peer_info()`).

    `extra`: NAME=VALUE lines appended at the end, where stock puts its detail-3 lines
    (`push-peer-info`: IV_HWADDR, IV_SSL, IV_PLAT_VER, `setenv UV_*`) and the IV_GUI_VER /
    IV_SSO it copies from `setenv`; see tunnel/app/peerinfo.py. Each NAME is [A-Za-z0-9_]+.

    `dyn_tls_crypt` adds IV_PROTO_DYN_TLS_CRYPT (512): renegotiations wrapped with a key from
    the TLS exporter, which only works where tunnel/protocol/ekm.py reaches it.

    IV_NCP=2 is the pre-2.5 way of saying "AES-256-GCM and AES-128-GCM"; stock sends it only
    when both are in data-ciphers. `compression` adds what `comp.c:
    comp_generate_peer_info_string()` says for a pull client: "stub-only" (2.6's default)
    the stub framings only, "asym" the decompressors too (IV_LZ4, IV_LZ4v2, IV_LZO).
    """
    names = [_cipher_name(c) for c in ciphers]
    if not names:
        raise ValueError("at least one data cipher is needed")
    for label, value in (("version", version), ("platform", platform)):
        if not value or any(ch in value for ch in "\n\0=") or not value.isprintable():
            raise ValueError(f"bad {label} for peer-info: {value!r}")
    lines = [f"IV_VER={version}", f"IV_PLAT={platform}", "IV_TCPNL=1", f"IV_MTU={tun_mtu_max}"]
    if "AES-128-GCM" in names and "AES-256-GCM" in names:
        lines.append("IV_NCP=2")
    lines.append("IV_CIPHERS=" + ":".join(names))
    lines.append(f"IV_PROTO={OUR_IV_PROTO | (IV_PROTO_DYN_TLS_CRYPT if dyn_tls_crypt else 0)}")
    if compression == "asym":
        lines += ["IV_LZ4=1", "IV_LZ4v2=1", "IV_LZO=1"]
    elif compression == "stub-only":
        lines.append("IV_LZO_STUB=1")
    if compression is not None:
        lines += ["IV_COMP_STUB=1", "IV_COMP_STUBv2=1"]
    for line in extra:
        name, sep, value = line.partition("=")
        if not sep or not _PEER_INFO_NAME.fullmatch(name) or "\n" in value or "\0" in value:
            raise ValueError(f"bad peer-info line {line!r}")
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def parse_peer_info(text: str) -> dict[str, str]:
    """`NAME=value` lines into a dict; malformed lines are skipped, the first duplicate wins.

    Tolerant like `misc.c: output_peer_info_env()`: a line whose name is not [A-Za-z0-9_]+ is
    dropped; control characters in a value are replaced with '_' so the dict is safe to log.
    """
    result: dict[str, str] = {}
    for line in text.split("\n"):
        name, sep, value = line.rstrip("\r").partition("=")
        if not sep or not _PEER_INFO_NAME.fullmatch(name) or name in result:
            continue
        result[name] = "".join(ch if ch.isprintable() else "_" for ch in value)
    return result


def peer_info_int(peer_info: Mapping[str, str], name: str) -> int:
    """An integer peer-info value read like stock's `sscanf("%d")`; 0 if absent or garbage."""
    match = _LEADING_INT.match(peer_info.get(name, ""))
    return int(match.group(1)) if match else 0


def negotiate_cipher(
    server_ciphers: Sequence[str],
    peer_info: Mapping[str, str],
    *,
    fallback: str | None = None,
    remote_cipher: str | None = None,
) -> str | None:
    """The server's NCP choice for one client (`ssl_ncp.c: ncp_get_best_cipher()`).

    The first of our ciphers that the client lists in IV_CIPHERS; without IV_CIPHERS,
    IV_NCP>=2 stands for AES-256-GCM:AES-128-GCM, and the `cipher` of the client's options
    string (`remote_cipher`, poor man's NCP) counts too. Only a client that announced nothing
    at all gets the fallback (`multi.c: multi_client_set_protocol_options()`: when the
    client's ciphers are known, falling back to one it did not offer would only fail later).
    Names compare case-insensitively; the result is upper-case.
    """
    if "IV_CIPHERS" in peer_info:
        offered = {c.strip().upper() for c in peer_info["IV_CIPHERS"].split(":") if c.strip()}
        remote_cipher = None  # a client that lists its ciphers may not accept its --cipher
    elif peer_info_int(peer_info, "IV_NCP") >= 2:
        offered = {"AES-256-GCM", "AES-128-GCM"}
    else:
        offered = set()
    if remote_cipher:
        offered.add(remote_cipher.upper())
    for cipher in server_ciphers:
        if cipher.upper() in offered:
            return cipher.upper()
    if not offered:
        return fallback.upper() if fallback else None
    return None


# --- PUSH_REPLY (wire doc 10) ---------------------------------------------------------------

PUSH_BUNDLE_SIZE = 1024  # common.h: a stock server keeps each PUSH_REPLY part under this
_PUSH_REPLY = "PUSH_REPLY"
_CONTINUE_MORE = ",push-continuation 2"
_CONTINUE_LAST = ",push-continuation 1"


@dataclass
class PushOptions:
    """What a PUSH_REPLY told the client. Unknown options are kept verbatim in `unknown`."""

    ifconfig: tuple[str, str] | None = None  # (address, netmask-or-remote per topology)
    ifconfig_ipv6: tuple[str, str | None] | None = None  # ("addr/bits", gateway)
    routes: list[tuple[str, str, str | None]] = field(default_factory=list)  # (net, mask, gw)
    routes_ipv6: list[str] = field(default_factory=list)  # "net/bits"
    route_gateway: str | None = None
    topology: str | None = None
    peer_id: int | None = None
    cipher: str | None = None  # upper-case
    ping: int | None = None
    ping_restart: int | None = None
    tun_mtu: int | None = None
    protocol_flags: set[str] = field(default_factory=set)
    dns: list[str] = field(default_factory=list)
    redirect_gateway: bool = False
    unknown: list[str] = field(default_factory=list)
    redirect_gateway_flags: set[str] = field(default_factory=set)
    compression: str | None = None  # a compress.py kind, from pushed comp-lzo/compress
    # Every pushed dhcp-option as written ("dhcp-option DOMAIN example.org"), in order: the
    # scripts' foreign_option_N (issue 11 item 6).
    dhcp_options: list[str] = field(default_factory=list)
    # A session credential the server may push; kept out of reprs and of `unknown`.
    auth_token: str | None = field(default=None, repr=False)
    auth_token_user: str | None = field(default=None, repr=False)


def _bad(name: str, reason: str) -> ProtocolError:
    return ProtocolError(f"bad pushed option '{name}': {reason}")


def _arity(name: str, args: list[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise _bad(name, f"takes {low}..{high} arguments, got {len(args)}")


def _int(name: str, text: str, low: int, high: int) -> int:
    # Plain decimal only: int() would also take "+5", " 5" and "5_0".
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise _bad(name, f"{text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise _bad(name, f"{value} is outside {low}..{high}")
    return value


def _ipv4(name: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise _bad(name, f"{text!r} is not an IPv4 address") from None


def _ipv6(name: str, text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise _bad(name, f"{text!r} is not an IPv6 address") from None


# route.c: get_special_addr() - resolved by the client at route-add time.
_SPECIAL_ADDRS = frozenset({"vpn_gateway", "net_gateway", "remote_host"})
_C_INT_MAX = 0x7FFFFFFF
_MAX_PEER_ID = 0xFFFFFF  # openvpn.h: MAX_PEER_ID
_TOPOLOGIES = frozenset({"net30", "p2p", "subnet"})


def _route(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 4)  # route network [netmask] [gateway] [metric]
    net = args[0] if args[0] in _SPECIAL_ADDRS else _ipv4(name, args[0])
    mask = _ipv4(name, args[1]) if len(args) > 1 else "255.255.255.255"
    gw = None
    if len(args) > 2:
        gw = args[2] if args[2] in _SPECIAL_ADDRS else _ipv4(name, args[2])
    if len(args) > 3 and args[3] != "default":
        _int(name, args[3], 0, _C_INT_MAX)  # validated; the metric is not carried
    opts.routes.append((net, mask, gw))


def _route_ipv6(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 3)  # route-ipv6 network/bits [gateway] [metric]
    try:
        network = ipaddress.IPv6Network(args[0], strict=False)
    except ValueError:
        raise _bad(name, f"{args[0]!r} is not an IPv6 network") from None
    if len(args) > 1:
        _ipv6(name, args[1])
    if len(args) > 2 and args[2] != "default":
        _int(name, args[2], 0, _C_INT_MAX)
    opts.routes_ipv6.append(str(network))


def _ifconfig(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 2, 2)
    opts.ifconfig = (_ipv4(name, args[0]), _ipv4(name, args[1]))


def _ifconfig_ipv6(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 2)  # stock requires the gateway; we do not need it
    addr, slash, bits_text = args[0].partition("/")
    address = _ipv6(name, addr)
    # options.c: /netbits must be 64..124 (64 when omitted).
    bits = _int(name, bits_text, 64, 124) if slash else 64
    gateway = _ipv6(name, args[1]) if len(args) > 1 else None
    opts.ifconfig_ipv6 = (f"{address}/{bits}", gateway)


def _route_gateway(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 1)
    value = args[0]
    opts.route_gateway = value if value == "dhcp" or value in _SPECIAL_ADDRS else _ipv4(
        name, value)


def _topology(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 1)
    if args[0] not in _TOPOLOGIES:
        raise _bad(name, f"{args[0]!r} is not net30, p2p or subnet")
    opts.topology = args[0]


def _peer_id(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 1)
    opts.peer_id = _int(name, args[0], 0, _MAX_PEER_ID)


def _cipher(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 1)
    if not _CIPHER_NAME.fullmatch(args[0]):
        raise _bad(name, f"{args[0]!r} is not a cipher name")
    opts.cipher = args[0].upper()


def _ping(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 1)
    opts.ping = _int(name, args[0], 0, _C_INT_MAX)


def _ping_restart(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 1)
    opts.ping_restart = _int(name, args[0], 0, _C_INT_MAX)


def _tun_mtu(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 2)  # tun-mtu n [occ-mtu]
    opts.tun_mtu = _int(name, args[0], 68, 65535)
    if len(args) > 1:
        _int(name, args[1], 0, 65535)


def _protocol_flags(opts: PushOptions, name: str, args: list[str]) -> None:
    _arity(name, args, 1, 16)
    for flag in args:
        # tls-ekm switches the data key derivation to TLS-EKM, which we never announce (IV_PROTO
        # bit 8): keys would silently differ. dyn-tls-crypt (bit 512) is the session's call.
        if flag == "tls-ekm":
            raise _bad(name, f"'{flag}' was not announced and is not supported")
    opts.protocol_flags.update(args)


def _key_derivation(opts: PushOptions, name: str, args: list[str]) -> None:
    raise _bad(name, f"{' '.join(args) or 'missing'}: only the PRF derivation is supported")


def _compression(opts: PushOptions, name: str, args: list[str]) -> None:
    # Even `comp-lzo no` turns on framing (a 0xFA byte on every data payload, wire doc 8.4):
    # the session switches to it (compress.py), or refuses it as stock does.
    if len(args) > 1:
        raise _bad(name, "takes at most one argument")
    try:
        opts.compression = compression_kind(name, args[0] if args else None)
    except ValueError as exc:
        raise _bad(name, str(exc)) from None


def _dhcp_option(opts: PushOptions, name: str, args: list[str]) -> bool:
    _arity(name, args, 1, 2)
    opts.dhcp_options.append(" ".join([name, *args]))
    if args[0] in ("DNS", "DNS6") and len(args) == 2:
        try:
            opts.dns.append(str(ipaddress.ip_address(args[1])))
        except ValueError:
            raise _bad(name, f"{args[1]!r} is not an IP address") from None
        return True
    return False  # DOMAIN, WINS, ...: the caller warns


def _redirect_gateway(opts: PushOptions, name: str, args: list[str]) -> None:
    opts.redirect_gateway = True
    opts.redirect_gateway_flags.update(args)


def _auth_token(opts: PushOptions, name: str, args: list[str]) -> None:
    if len(args) != 1:
        raise _bad(name, "takes exactly one argument")  # never echo the token
    if name == "auth-token":
        opts.auth_token = args[0]
    else:
        opts.auth_token_user = args[0]


def _ignored(opts: PushOptions, name: str, args: list[str]) -> None:
    """Accepted and meaningless for us (stock ignores `tun-ipv6` in pull mode too)."""


_Handler = Callable[[PushOptions, str, list[str]], bool | None]
_HANDLERS: dict[str, _Handler] = {
    "ifconfig": _ifconfig,
    "ifconfig-ipv6": _ifconfig_ipv6,
    "route": _route,
    "route-ipv6": _route_ipv6,
    "route-gateway": _route_gateway,
    "topology": _topology,
    "peer-id": _peer_id,
    "cipher": _cipher,
    "ping": _ping,
    "ping-restart": _ping_restart,
    "tun-mtu": _tun_mtu,
    "protocol-flags": _protocol_flags,
    "key-derivation": _key_derivation,
    "comp-lzo": _compression,
    "compress": _compression,
    "dhcp-option": _dhcp_option,
    "redirect-gateway": _redirect_gateway,
    "auth-token": _auth_token,
    "auth-token-user": _auth_token,
    "tun-ipv6": _ignored,
}


def parse_push_reply(message: str, into: PushOptions | None = None) -> tuple[PushOptions, bool]:
    """Apply one PUSH_REPLY message; returns (options, more_parts_follow).

    For a multi-part reply pass the previous result as ``into``: the part is applied to it in
    place, atomically (on ProtocolError ``into`` is left as it was). ``more_parts_follow`` is
    True for `push-continuation 2`. Options are split on ',' then on whitespace, as
    `apply_push_options()` does (no quoting support: stock servers push none).
    """
    if not message.startswith(_PUSH_REPLY):
        raise ProtocolError("not a PUSH_REPLY message")
    body = message[len(_PUSH_REPLY):]
    if body and body[0] != ",":
        raise ProtocolError("PUSH_REPLY must be followed by ',' or end the message")
    opts = copy.deepcopy(into) if into is not None else PushOptions()
    continuation = 0
    for item in body[1:].split(","):
        words = item.split()
        if not words:
            continue
        name, args = words[0], words[1:]
        if name == "push-continuation":
            _arity(name, args, 1, 1)
            continuation = _int(name, args[0], 1, 2)
            continue
        handler = _HANDLERS.get(name)
        if handler is None or handler(opts, name, args) is False:
            opts.unknown.append(" ".join(words))
    if into is None:
        return opts, continuation == 2
    for f in fields(PushOptions):
        setattr(into, f.name, getattr(opts, f.name))
    return into, continuation == 2


def max_pushed_option(max_part: int = PUSH_BUNDLE_SIZE) -> int:
    """The longest option (in bytes) one PUSH_REPLY part of `max_part` bytes can carry."""
    return max_part - 1 - len(_CONTINUE_MORE) - len(_PUSH_REPLY) - 1  # NUL, the comma


def build_push_reply(options: Sequence[str], *, max_part: int = PUSH_BUNDLE_SIZE) -> list[str]:
    """PUSH_REPLY message(s) carrying ``options`` in order, each shorter than ``max_part`` bytes.

    One message when everything fits; otherwise parts ending in `push-continuation 2` and a
    last one ending in `push-continuation 1` (`push.c: send_push_reply()`). An empty list gives
    a bare "PUSH_REPLY", which stock also sends so the client stops asking.
    """
    if not 64 <= max_part <= MAX_CONTROL_MESSAGE:
        raise ValueError(f"max_part must be 64..{MAX_CONTROL_MESSAGE}, not {max_part}")
    pieces = []
    for option in options:
        if "," in option:
            raise ValueError(f"a pushed option cannot contain ',': {option!r}")
        if not option.strip() or not option.isprintable():
            raise ValueError(f"a pushed option must be printable and non-empty: {option!r}")
        if option.split()[0] == "push-continuation":
            raise ValueError("push-continuation is added by build_push_reply itself")
        pieces.append("," + option)
    single = _PUSH_REPLY + "".join(pieces)
    if len(single.encode()) < max_part:
        return [single]
    # The NUL terminator makes "< max_part" the same as stock's buffer of max_part bytes.
    budget = max_part - 1 - len(_CONTINUE_MORE)
    parts: list[str] = []
    current = _PUSH_REPLY
    for piece in pieces:
        size = len(piece.encode())
        if len(_PUSH_REPLY) + size > budget:
            raise ValueError(f"pushed option too long for one {max_part}-byte part")
        if len(current.encode()) + size > budget:
            parts.append(current + _CONTINUE_MORE)
            current = _PUSH_REPLY
        current += piece
    parts.append(current + _CONTINUE_LAST)
    return parts


# --- control-message framing (wire doc 10) --------------------------------------------------

# The stock receiver reads at most TLS_CHANNEL_BUF_SIZE plaintext bytes per SSL_read and a
# message must not straddle two reads, so one message plus its NUL stays within this.
MAX_CONTROL_MESSAGE = 2048
_MAX_PENDING = 64 * 1024

_KEYWORDS = frozenset({
    "PUSH_REQUEST", "PUSH_REPLY", "PUSH_UPDATE", "AUTH_FAILED", "AUTH_PENDING", "RESTART",
    "HALT", "EXIT", "INFO", "INFO_PRE", "CR_RESPONSE",
})


def encode_control_message(text: str) -> bytes:
    """``text`` + NUL, for one TLS write. ValueError for what a stock peer would drop."""
    if not text or not text.isprintable():
        raise ValueError(f"control message must be non-empty printable text: {text[:40]!r}")
    data = text.encode("utf-8") + b"\0"
    if len(data) > MAX_CONTROL_MESSAGE:
        raise ValueError(f"control message is {len(data)} bytes, limit {MAX_CONTROL_MESSAGE}")
    return data


def classify_control_message(text: str) -> tuple[str, str]:
    """(KEYWORD, rest after the first ','): "AUTH_FAILED,TEMP..." -> ("AUTH_FAILED", "TEMP...").

    Known keywords are matched case-insensitively and returned upper-case; an unknown one is
    returned as written so the caller can warn about it.
    """
    head, _, rest = text.partition(",")
    keyword = head.strip().upper()
    return (keyword if keyword in _KEYWORDS else head), rest


class ControlMessageReader:
    """Reassembles NUL-terminated control messages from TLS plaintext (one per key state).

    Accumulates across records, which is more forgiving than stock's one-read-per-message rule.
    Like `extract_command_buffer()`: trailing CR/LF are chomped, empty messages skipped, and a
    message with non-printable characters is dropped and counted in `invalid`. More than
    `max_pending` bytes without a NUL is a ProtocolError (the buffer is then discarded).
    """

    __slots__ = ("_buf", "invalid", "max_pending")

    def __init__(self, max_pending: int = _MAX_PENDING) -> None:
        self._buf = bytearray()
        self.max_pending = max_pending
        self.invalid = 0

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a complete message."""
        return len(self._buf)

    def feed(self, plaintext: bytes) -> list[str]:
        self._buf += plaintext
        messages: list[str] = []
        start = 0
        while (end := self._buf.find(b"\0", start)) >= 0:
            raw = bytes(self._buf[start:end]).rstrip(b"\r\n")
            start = end + 1
            if not raw:
                continue
            text = raw.decode("utf-8", "replace")
            if text.isprintable():
                messages.append(text)
            else:
                self.invalid += 1
        del self._buf[:start]
        if len(self._buf) > self.max_pending:
            self._buf.clear()
            raise ProtocolError(
                f"control channel: more than {self.max_pending} bytes without a message end")
        return messages
