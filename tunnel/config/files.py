"""Reading the files an option names (ca, cert, key, dh), or taking its inline block.

Relative names are resolved against the config file's directory. (Stock OpenVPN resolves them
against its working directory, which its packaged service units set to the config directory
with ``--cd``; resolving against the config's own directory gives the same result there, and
does not depend on where the tunnel was started from.) Files are read while the config is
loaded, so a missing or unreadable file is reported at the line that names it, not later when
TLS starts. Only a light PEM check is done here; the TLS layer does the real parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.lexer import Directive

__all__ = ["PemKind", "PemText", "read_pem", "read_text", "resolve_path"]

# Large enough for any certificate chain or DH parameters; small enough that `ca /dev/zero`
# fails at once instead of eating memory.
_MAX_FILE_BYTES = 1 << 20

_ENCRYPTED_KEY = re.compile(r"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED")


@dataclass(frozen=True, slots=True)
class PemKind:
    """What a PEM option must contain: a regex for its BEGIN line and how to describe it."""

    marker: re.Pattern[str]
    description: str


CERTIFICATE = PemKind(re.compile(r"-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----"), "certificate")
PRIVATE_KEY = PemKind(re.compile(r"-----BEGIN (?:[A-Z0-9]+ )?PRIVATE KEY-----"), "private key")
DH_PARAMETERS = PemKind(re.compile(r"-----BEGIN (?:X9\.42 )?DH PARAMETERS-----"), "DH parameters")


@dataclass(frozen=True, slots=True)
class PemText:
    text: str
    source: str  # the resolved file name, or "inline"


def resolve_path(base_dir: Path, name: str) -> Path:
    """A file name from the config, relative to the config file's directory."""
    return base_dir / name


def _read_text(d: Directive, path: Path) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OptionProblem(f"cannot read {quote(d.name)} file {path}: {reason}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise OptionProblem(
            f"{quote(d.name)} file {path} is larger than {_MAX_FILE_BYTES} bytes; not a PEM file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OptionProblem(
            f"{quote(d.name)} file {path} is not text; PEM (-----BEGIN ...) expected"
        ) from None


def read_text(d: Directive, base_dir: Path) -> tuple[str, str]:
    """(text, source) of an option given as a file name or an inline block (source "inline")."""
    if d.inline is not None:
        return d.inline, "inline"
    path = resolve_path(base_dir, d.args[0])
    return _read_text(d, path), str(path)


def read_pem(d: Directive, base_dir: Path, kind: PemKind) -> PemText:
    """The PEM text of an option given as a file name or as an inline block."""
    if d.inline is not None:
        text, source, origin = d.inline, "inline", f"inline <{d.name}> block"
    else:
        path = resolve_path(base_dir, d.args[0])
        text, source, origin = _read_text(d, path), str(path), f"{quote(d.name)} file {path}"
    if kind.marker.search(text) is None:
        raise OptionProblem(f"{origin} holds no PEM {kind.description} (-----BEGIN ...)")
    if kind is PRIVATE_KEY and _ENCRYPTED_KEY.search(text):
        raise OptionProblem(
            f"{origin} holds an encrypted private key; passphrases are not supported "
            "(decrypt it, e.g. with 'openssl pkey')"
        )
    return PemText(text, source)
