"""A pushed option too long for one PUSH_REPLY part refuses that client; it never raises.

The config's own pushes are bounded when it is read (tests/config/test_bounds.py); this is the
session's guard for per-client options (ccd files, scripts) that reach it unchecked.
"""

from __future__ import annotations

from tests.protocol.harness import Pair
from tunnel.protocol.events import ClientRefused, SessionClosed
from tunnel.protocol.messages import max_pushed_option


def test_an_overlong_pushed_option_fails_the_client_cleanly() -> None:
    pair = Pair()
    pair.server.settings.push = ("setenv-safe X " + "x" * max_pushed_option(),)
    pair.connect(5)  # raised "pushed option too long for one 1024-byte part" before
    assert pair.client.session.pushed is None
    refused = [e for e in pair.server_events if isinstance(e, ClientRefused)]
    assert refused and "cannot push the options" in refused[0].reason, pair.server_events
    assert any(isinstance(e, SessionClosed) for e in pair.client_events), pair.client_events


def test_an_option_of_the_maximum_length_is_pushed() -> None:
    pair = Pair()
    option = "setenv-safe X " + "x" * (max_pushed_option() - len("setenv-safe X "))
    pair.server.settings.push = (option,)
    pair.connect(5)
    assert pair.client.session.pushed is not None
