"""The live key-derivation vector of OPENVPN-WIRE.md 7.1, shared by the PRF and data-channel
tests: a stock 2.6.14 server log (verb 9) with the probe client, every line verified."""

from __future__ import annotations

LIVE = {
    "client_pre_master": bytes.fromhex(
        "8532e12c92f397873bfa73e65719899c16db19401ba4349830d8e0ec3afeea0f"
        "4daef9baedfae36d7d6901d3f8171f6e"
    ),
    "client_random1": bytes.fromhex(
        "da4fa4c291a67436f15dc2f1fedfe35b7349f3bad30e67dffe5ee020e2e4424b"
    ),
    "client_random2": bytes.fromhex(
        "00fb260cddd1fa42d3cfd896b8b4eeeeb3a0ce93a7acff255b69d3a18e14a274"
    ),
    "server_random1": bytes.fromhex(
        "60d1368b6ff93ea157c2d026ff0d14dfb1d2ac47dac316f50d07249d796b0b24"
    ),
    "server_random2": bytes.fromhex(
        "824fd1491dd3b7321fb5651d95139cee7bd8b368503dee14540b27bb87ed4e66"
    ),
    "client_sid": bytes.fromhex("2bb62f473956d7ad"),
    "server_sid": bytes.fromhex("4dcb24bc18fe83af"),
}
MASTER = bytes.fromhex(
    "3ac89c61a8d486cb25b57cd549a7d62fbda96a248a4233b3cf030da00f89d059"
    "82ce87302419b7859bcbdf995021f675"
)
C2S_KEY = bytes.fromhex("502a257f1ba045a09daa96b4ffa755054fee9e22b50ce5cc189715679489ec61")
C2S_IV = bytes.fromhex("617da8dd3cd3ecba")
S2C_KEY = bytes.fromhex("ee7d96e591de4b72d770fb4d7d0b6326ab540f9eccbd0bf7f9296effc2f1327e")
S2C_IV = bytes.fromhex("9f7d20ccb953e504")

# A client->server P_DATA_V2 from that run: peer-id 0, pid 1, a keepalive ping.
DATA_V2_PACKET = bytes.fromhex(
    "48000000000000010f49ff9b800ffc4b97b64c8694834cc95aa31a78ee2eeed7abeb3e3ccb096018"
)
