"""The requirement markers of tests/tools.py, run in a real pytest on a throwaway test file.

A tool that is certainly not installed is added to TOOLS there; the run must skip the test that
needs it with the reason, list it with its apt-get line at the end, and fail it under CI=true.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.netns import REPO_ROOT

CONFTEST = '''
import pytest

pytest.register_assert_rewrite("tests.tools")
from tests.tools import TOOLS, Tool

TOOLS["nosuchtool"] = Tool(("no-such-tool-7f3a",), ("no-such-package",), "the self-test")
TOOLS["shell"] = Tool(("sh",), ("dash",), "a tool every machine has")
pytest_plugins = ["tests.tools"]
'''

TESTS = '''
import pytest
from tests.tools import require_tool

@pytest.mark.nosuchtool
def test_needs_the_tool():
    raise AssertionError("must not run without its tool")

def test_needs_it_at_run_time():
    require_tool("nosuchtool")
    raise AssertionError("must not run without its tool")

@pytest.mark.shell
def test_needs_an_installed_tool():
    pass

def test_plain():
    pass
'''


def _pytest(tmp_path: Path, *args: str, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTEST_ADDOPTS"}}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--strict-markers",
         "-rs", "--rootdir", str(tmp_path), *args, str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )


def test_missing_tool_skips_with_reason_and_summary(tmp_path: Path) -> None:
    result = _pytest(tmp_path, ci=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "2 passed, 2 skipped" in out, out
    assert "needs no-such-tool-7f3a for the self-test (apt-get install no-such-package)" in out
    # The summary comes after the tests: what was missing, how many tests, the install line.
    summary = out[out.index("missing requirements"):]
    assert "missing no-such-tool-7f3a (the self-test): 2 tests" in summary, out
    assert ("install them with:  sudo apt-get install -y --no-install-recommends "
            "no-such-package") in summary, out
    assert "dash" not in summary, out  # installed: not listed


def test_missing_tool_fails_under_ci(tmp_path: Path) -> None:
    result = _pytest(tmp_path, ci=True)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    # A marker refuses in setup (an error), require_tool in the test body (a failure).
    assert "1 failed, 2 passed" in out and "1 error" in out, out
    assert "required in CI" in out, out


def test_misspelt_marker_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "test_typo.py").write_text(
        "import pytest\n\n@pytest.mark.iperf\ndef test_typo():\n    pass\n")
    result = _pytest(tmp_path, ci=False)
    assert result.returncode != 0
    assert "'iperf' not found in `markers`" in result.stdout + result.stderr
