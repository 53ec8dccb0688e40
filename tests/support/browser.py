"""Headless Chromium (Debian's ``chromium``), for tests that look at a page the way a person would.

``rendered_dom`` and ``screenshot`` load a page once; ``browser_page`` drives a live one over the
DevTools protocol (click, type, evaluate, capture) and collects what a person would see in its
console: errors logged, exceptions thrown, and every request the page made.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

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


STARTUP_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 30
POLL_S = 0.2


class DevToolsError(RuntimeError):
    """The browser refused a command, or a script evaluated in the page threw."""


class BrowserPage:
    """One tab of a headless Chromium, driven over the DevTools protocol.

    Events arrive on the same socket as answers, so they are collected whenever the test waits for
    an answer: ``wait_for`` polls, and so keeps ``errors`` and ``requests`` current while it waits.
    """

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._last_id = 0
        self._loads = 0
        self.errors: list[str] = []
        self.requests: list[dict[str, Any]] = []  # DevTools' Request objects: url, method, headers, …

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._last_id += 1
        self._socket.send(json.dumps({"id": self._last_id, "method": method, "params": params}))
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.0, deadline - time.monotonic())))
            if message.get("id") == self._last_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._record(message.get("method", ""), message.get("params", {}))

    def _record(self, event: str, params: dict[str, Any]) -> None:
        if event == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append("console: " + " ".join(_console_argument(arg) for arg in params["args"]))
        elif event == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                "exception: " + details.get("exception", {}).get("description", details["text"])
            )
        elif event == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry['text']} {entry.get('url', '')}".rstrip())
        elif event == "Network.requestWillBeSent":
            self.requests.append(params["request"])
        elif event == "Page.loadEventFired":
            self._loads += 1

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise DevToolsError(details.get("exception", {}).get("description", details["text"]))
        return answer["result"].get("value")

    def wait_for(self, expression: str, *, timeout_s: float, what: str) -> Any:
        """Polls ``expression`` until it is truthy and returns its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout_s} s (last value {value!r}; errors {self.errors})"
                )
            time.sleep(POLL_S)

    def open(self, url: str, *, timeout_s: float = 30) -> None:
        """Navigates and waits for the new page's load event (the old page's state would answer a poll)."""
        loads = self._loads
        navigated = self.send("Page.navigate", url=url)
        if "errorText" in navigated:
            raise DevToolsError(f"{url}: {navigated['errorText']}")
        deadline = time.monotonic() + timeout_s
        while self._loads == loads:
            assert time.monotonic() < deadline, f"{url} did not load within {timeout_s} s"
            self.send("Runtime.evaluate", expression="0")  # reads the events that arrived meanwhile
            time.sleep(POLL_S / 2)

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, which must be visible and not covered."""
        where = self.evaluate(f"""(() => {{
            const element = document.querySelector({json.dumps(selector)});
            if (!element) return null;
            element.scrollIntoView({{block: "center"}});
            const box = element.getBoundingClientRect();
            const x = box.left + box.width / 2, y = box.top + box.height / 2;
            return {{x, y, reachable: element.contains(document.elementFromPoint(x, y))}};
        }})()""")
        assert where is not None, f"nothing on the page matches {selector}"
        assert where["reachable"], f"{selector} is covered by another element"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent", type=kind, x=where["x"], y=where["y"], button="left", clickCount=1
            )

    def press_key(self, key: str) -> None:
        """One printable key, pressed and released, as the keyboard would send it."""
        self.send("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    def capture(self, target: Path) -> Path:
        """A PNG of the whole page, beyond the window's height."""
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        target.write_bytes(base64.b64decode(shot["data"]))
        return target


def _console_argument(argument: dict[str, Any]) -> str:
    if "value" in argument:
        return str(argument["value"])
    return str(argument.get("description", argument.get("unserializableValue", argument["type"])))


def _debugging_port(profile: Path, browser: subprocess.Popen[bytes]) -> int:
    """The port Chromium chose for ``--remote-debugging-port=0``: it writes it into the profile."""
    announced = profile / "DevToolsActivePort"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (announced.exists() and announced.read_text().strip()):
        assert browser.poll() is None, f"chromium exited with {browser.returncode} before it listened"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(POLL_S)
    return int(announced.read_text().split()[0])


def _page_socket(port: int) -> str:
    """The DevTools socket of the tab Chromium opened at start-up."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            tabs = [tab for tab in json.load(answer) if tab["type"] == "page"]
        if tabs:
            return str(tabs[0]["webSocketDebuggerUrl"])
        assert time.monotonic() < deadline, "chromium opened no tab"
        time.sleep(POLL_S)


@contextmanager
def browser_page(*, width: int = 1600, height: int = 1000) -> Iterator[BrowserPage]:
    """A fresh headless Chromium (its own throwaway profile) with one tab of ``width`` x ``height``."""
    binary = chromium_or_skip()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = _debugging_port(Path(profile), browser)
            with connect(_page_socket(port), max_size=None, open_timeout=STARTUP_TIMEOUT_S) as socket:
                page = BrowserPage(socket)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    page.send(f"{domain}.enable")
                page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
