"""Fixtures of the e2e tests."""

from __future__ import annotations

import pytest

from tests.e2e.openvpn_peer import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One throwaway PKI (CA, CN "server", CN "client") per test module."""
    return make_pki(tmp_path_factory.mktemp("pki"))
