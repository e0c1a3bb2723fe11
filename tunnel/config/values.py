"""Argument parsers for option values: numbers, ports, addresses, host names, keywords.

Each takes the directive and the index of the argument, returns a typed value, and raises
:class:`OptionProblem` with a message that names the option and quotes the bad value. They are
stricter than OpenVPN, which reads numbers with ``atoi()`` (so ``port 11x94`` is port 11 there):
a value that is not exactly what the option expects is an error here rather than a surprise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv6Address,
    IPv6Interface,
    NetmaskValueError,
    ip_address,
)

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.lexer import Directive

__all__ = [
    "parse_choice",
    "parse_host",
    "parse_int",
    "parse_ipv4",
    "parse_ipv6",
    "parse_ipv6_prefix",
    "parse_netmask",
    "parse_port",
]

_DIGITS = re.compile(r"[0-9]+")
# A DNS name as resolvers accept it; underscores appear in real-world internal names.
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_NUMERIC_DOTTED = re.compile(r"[0-9.]+")


def _option(d: Directive) -> str:
    return f"option {quote(d.name)}"


def parse_int(d: Directive, index: int, low: int, high: int | None = None) -> int:
    """A decimal integer in ``low..high`` (no upper bound when ``high`` is None)."""
    value = d.args[index]
    expected = f"a number {low}..{high}" if high is not None else f"a number >= {low}"
    # Bound the digit count before int(): Python refuses to convert very long digit strings.
    if not _DIGITS.fullmatch(value) or len(value) > 12:
        raise OptionProblem(f"{_option(d)} expects {expected}, got {quote(value)}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise OptionProblem(f"{_option(d)} expects {expected}, got {quote(value)}")
    return number


def parse_port(d: Directive, index: int, *, allow_zero: bool = False) -> int:
    """A UDP port number; 0 ("any port") only where the option allows it."""
    return parse_int(d, index, 0 if allow_zero else 1, 65535)


def parse_choice(d: Directive, index: int, choices: Sequence[str]) -> str:
    """One of a fixed set of keywords (case-sensitive, as in OpenVPN)."""
    value = d.args[index]
    if value not in choices:
        listed = ", ".join(quote(choice) for choice in choices)
        raise OptionProblem(f"{_option(d)} expects one of {listed}, got {quote(value)}")
    return value


def parse_ipv4(d: Directive, index: int, what: str = "an IPv4 address") -> IPv4Address:
    """A dotted-quad IPv4 address (OpenVPN's ``inet_aton()`` also takes ``10.8``; we do not)."""
    value = d.args[index]
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise OptionProblem(f"{_option(d)} expects {what}, got {quote(value)}") from None


def parse_netmask(d: Directive, index: int) -> IPv4Address:
    """A dotted-quad netmask with contiguous one bits (255.255.255.0, not 255.0.255.0)."""
    mask = parse_ipv4(d, index, "a netmask such as 255.255.255.0")
    bits = int(mask)
    inverted = ~bits & 0xFFFFFFFF
    if inverted & (inverted + 1):  # the zero bits must be one contiguous low run
        raise OptionProblem(
            f"{_option(d)} expects a netmask such as 255.255.255.0, got {quote(d.args[index])}"
        )
    return mask


def parse_ipv6(d: Directive, index: int) -> IPv6Address:
    """An IPv6 address literal, without a %scope (OpenVPN reads these with inet_pton())."""
    value = d.args[index]
    try:
        if "%" in value:
            raise AddressValueError(value)
        return IPv6Address(value)
    except AddressValueError:
        raise OptionProblem(f"{_option(d)} expects an IPv6 address, got {quote(value)}") from None


def parse_ipv6_prefix(
    d: Directive, index: int, *, min_bits: int = 0, max_bits: int = 128
) -> IPv6Interface:
    """``ADDR/BITS`` (``ADDR`` alone means /128, as OpenVPN's ``get_ipv6_addr()``).

    Returned as an interface, i.e. the address *as written* plus the prefix length, because
    OpenVPN uses the written address (``server-ipv6 fd00::5/64`` puts the server at fd00::6).
    """
    value = d.args[index]
    expected = f"an IPv6 address with a prefix length /{min_bits}../{max_bits}"
    if value.count("/") > 1 or not value.split("/")[0] or "%" in value:
        raise OptionProblem(f"{_option(d)} expects {expected}, got {quote(value)}")
    address_text, _, bits_text = value.partition("/")
    if bits_text and (not _DIGITS.fullmatch(bits_text) or len(bits_text) > 3):
        raise OptionProblem(f"{_option(d)} expects {expected}, got {quote(value)}")
    bits = int(bits_text) if bits_text else 128
    try:
        interface = IPv6Interface(f"{address_text}/{bits}")
    except (AddressValueError, NetmaskValueError):
        raise OptionProblem(f"{_option(d)} expects {expected}, got {quote(value)}") from None
    if not min_bits <= bits <= max_bits:
        raise OptionProblem(f"{_option(d)} expects {expected}, got {quote(value)}")
    return interface


def parse_host(d: Directive, index: int) -> str:
    """An IP address literal or a DNS name (resolved later, by the I/O layer)."""
    value = d.args[index]
    try:
        return str(ip_address(value))
    except ValueError:
        pass
    # All digits and dots is a mistyped address (999.1.1.1), not a name.
    looks_numeric = _NUMERIC_DOTTED.fullmatch(value) is not None
    if len(value) > 253 or looks_numeric or not _HOST_NAME.fullmatch(value):
        raise OptionProblem(f"{_option(d)} expects a host name or IP address, got {quote(value)}")
    return value
