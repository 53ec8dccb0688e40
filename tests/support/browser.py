"""Headless Chromium (Debian's ``chromium``), for tests that look at a page the way a person would."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_or_skip() -> str:
    """The browser's path; on CI (where ``.ci/run`` installs it) its absence is a failure."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def rendered_dom(page: Path) -> str:
    """The DOM of a local page after Chromium loaded and laid it out."""
    browser = chromium_or_skip()
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: Path, target: Path, *, size: str = "900,1600") -> Path:
    browser = chromium_or_skip()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                f"--screenshot={target}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=60,
            check=True,
            stdin=subprocess.DEVNULL,
        )
    return target
