"""Shared test policy.

Tests that need root (network namespaces, TUN) or the stock `openvpn` binary are marked
`root` / `openvpn`. On a developer machine without them they skip with the reason; under CI
(`CI=true`) a missing requirement is a failure, never a skip, so CI cannot pass without
running them.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ["tests.netns"]  # the netns_pair fixture for e2e tests

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(item: pytest.Item) -> str | None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        return "needs root"
    if item.get_closest_marker("openvpn") and shutil.which("openvpn") is None:
        return "needs the openvpn binary (apt-get install openvpn)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = _missing(item)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason}: required in CI", pytrace=False)
    pytest.skip(reason)
