"""tunnel/config/ciphers.py: the config's cipher names are the data channel's, read as stock."""

from __future__ import annotations

import os

import pytest

from tunnel.config.ciphers import (
    AUTH_DIGESTS,
    DEFAULT_DATA_CIPHERS,
    SUPPORTED_DATA_CIPHERS,
    canonical_cipher,
    read_cipher_list,
)
from tunnel.protocol.datacipher import make_data_key
from tunnel.protocol.replay import ReplayWindow
from tunnel.protocol.settings import SessionSettings


@pytest.mark.parametrize("cipher", SUPPORTED_DATA_CIPHERS)
def test_every_name_the_config_accepts_gets_a_data_key(cipher: str) -> None:
    key = make_data_key(cipher=cipher, auth=AUTH_DIGESTS[0], key2=os.urandom(256),
                        is_server=True, key_id=0, replay=ReplayWindow())
    assert key.cipher == cipher


@pytest.mark.parametrize("auth", AUTH_DIGESTS)
def test_every_auth_digest_the_config_accepts_keys_cbc(auth: str) -> None:
    make_data_key(cipher="AES-256-CBC", auth=auth, key2=os.urandom(256), is_server=False,
                  key_id=1, replay=ReplayWindow())


def test_defaults_are_stock_26_and_shared_by_the_session_settings() -> None:
    assert DEFAULT_DATA_CIPHERS == ("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305")
    default = SessionSettings.__dataclass_fields__["data_ciphers"].default
    assert default is DEFAULT_DATA_CIPHERS


def test_names_are_case_insensitive_and_optional_ones_skipped() -> None:
    assert canonical_cipher("chacha20-poly1305") == "CHACHA20-POLY1305"
    assert canonical_cipher("BF-CBC") is None
    chosen, missing, skipped = read_cipher_list("aes-128-gcm:?SM4-GCM:AES-128-GCM:BF-CBC")
    assert (chosen, missing, skipped) == (["AES-128-GCM"], ["BF-CBC"], ["SM4-GCM"])
