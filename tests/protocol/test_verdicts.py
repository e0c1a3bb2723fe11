"""Verdicts: named, and equal to the ints the I/O layer has always compared against."""

from __future__ import annotations

from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN, Verdict


def test_verdicts_are_named_ints() -> None:
    assert (TO_TUN, CONSUMED, DROPPED) == (1, 0, -1)
    assert TO_TUN is Verdict.TO_TUN and CONSUMED is Verdict.CONSUMED and DROPPED is Verdict.DROPPED
    assert str(Verdict(1)) == "1" and repr(DROPPED) == "<Verdict.DROPPED: -1>"
    assert len({TO_TUN, CONSUMED, DROPPED}) == 3
