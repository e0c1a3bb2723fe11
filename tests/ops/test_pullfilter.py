"""pull-filter on PUSH_REPLY texts (app/pullfilter.py)."""

from __future__ import annotations

import logging

import pytest

from tunnel.app.pullfilter import make_push_filter
from tunnel.protocol.errors import ProtocolError

LOG = logging.getLogger("test")


def test_first_matching_filter_decides() -> None:
    apply = make_push_filter([("accept", "route 10.1."), ("ignore", "route "),
                              ("ignore", "dhcp-option DNS")], LOG)
    text = ("PUSH_REPLY,route 10.1.0.0 255.255.0.0,route 10.2.0.0 255.255.0.0,"
            "dhcp-option DNS 1.1.1.1,ping 10")
    assert apply(text) == "PUSH_REPLY,route 10.1.0.0 255.255.0.0,ping 10"
    assert apply("AUTH_FAILED") == "AUTH_FAILED"


def test_reject_refuses_the_push() -> None:
    apply = make_push_filter([("reject", "redirect-gateway")], LOG)
    with pytest.raises(ProtocolError, match="rejected by pull-filter"):
        apply("PUSH_REPLY,redirect-gateway def1,ping 10")
