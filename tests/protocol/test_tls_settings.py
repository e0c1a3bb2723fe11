"""TlsSettings (tls_settings.py): refused when inconsistent, never showing its secrets."""

from __future__ import annotations

import pytest

from tests.protocol.tls_helpers import (
    Pems,
    tls_for,
)
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.tls_settings import TlsSettings


def test_settings_repr_hides_secrets(pki: Pems) -> None:
    s = tls_for(pki, "client", key_password="hunter2")
    text = repr(s)
    assert "PRIVATE KEY" not in text
    assert "hunter2" not in text
    assert "BEGIN CERTIFICATE" in text



@pytest.mark.parametrize(
    "kwargs",
    [
        {"remote_cert_tls": "peer"},
        {"verify_x509_name": ("server", "cn")},
        {"verify_x509_name": ("", "name")},
        {"tls_version_min": "1.4"},
        {"tls_version_min": "1.3", "tls_version_max": "1.2"},
        {"tls_version_max": "tls1.2"},
    ],
)
def test_settings_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TlsSettings(ca="", cert="", key="", **kwargs)  # type: ignore[arg-type]
