"""The captured session's data-channel keys (vectors.py) as the two peers' `DataKey`s."""

from __future__ import annotations

from tests.protocol.vectors import C2S_IV, C2S_KEY, S2C_IV, S2C_KEY
from tunnel.protocol.datachannel import DataKey
from tunnel.protocol.prf import DirectionKey
from tunnel.protocol.replay import ReplayWindow


def vector_key_pair() -> tuple[DataKey, DataKey]:
    """(client, server): key_id 0, AES-256-GCM, each sealing what the other opens. Made on
    whatever AEAD `datachannel.new_aead` gives at the call (tests may patch it first)."""
    c2s, s2c = DirectionKey(C2S_KEY, C2S_IV), DirectionKey(S2C_KEY, S2C_IV)
    client = DataKey(key_id=0, cipher="AES-256-GCM", encrypt=c2s, decrypt=s2c,
                     replay=ReplayWindow())
    server = DataKey(key_id=0, cipher="AES-256-GCM", encrypt=s2c, decrypt=c2s,
                     replay=ReplayWindow())
    return client, server
