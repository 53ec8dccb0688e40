"""The live console in a real browser, the way an instructor teaches the flash-sale lesson from it.

One ``lab console`` (on a private embedded lab) serves the module. First every design's page is
looked over: it loads, links the others, lists its shortcuts, and applies a setting by restarting
what reads it. Then the lesson: headless Chromium opens ``/designs/orders``, presses the flash-sale
preset with naive and hardened ticked, starts it, freezes the broker mid-sale and thaws it again (a
click and a keyboard shortcut), and watches: the naive oversold counter turns red above 0, the
hardened one never leaves 0, both broker presses are drawn on every chart, and the verdict and the
report's link appear at the end. No page logs an error or asks anything of another origin.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.lab import processes
from tests.e2e.test_lab_cli import LAB, _lab, _private_lab_env
from tests.support.browser import BrowserPage, browser_page

# Each test within 3 minutes, the lab's start included for the first: the lesson must fit in a lesson.
pytestmark = [pytest.mark.e2e, pytest.mark.alone, pytest.mark.timeout(180)]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "console.png"
CHARTS = ("chart-throughput", "chart-errors", "chart-latency")
BROKER = "kafka"
DESIGNS = ("orders", "ratelimit", "shortener")
SETTING, SETTING_VALUE, SETTING_RESTARTS = "LAB_SHORTENER_HOT_CACHE_TTL_MS", "250", "shortener-hardened"
TOKEN = "a-token-for-this-test"  # a console on loopback does not ask for one; the page sends it all the same
LAB_UP_S = 90
MID_RUN_S = 10  # when the screenshot is taken: the flash sale's load lasts 20 s
STOP_S = 60


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/designs", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``lab console`` on a free port, as a user starts it: it brings a private embedded lab up, and
    takes it down again on Ctrl-C."""
    tmp_path = tmp_path_factory.mktemp("console")
    env = _private_lab_env(tmp_path / "lab")
    url = f"http://127.0.0.1:{processes.free_port()}"
    command = [*LAB, "console", "--port", url.rsplit(":", 1)[1], "--out", str(tmp_path / "runs")]
    with (tmp_path / "console.log").open("wb") as log:
        served = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + LAB_UP_S
        while not _serving(url):
            assert served.poll() is None, (tmp_path / "console.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"lab console did not serve within {LAB_UP_S} s"
            time.sleep(0.5)
        yield url
    finally:
        _stop(served, env)


def _stop(served: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    """Ctrl-C, as a user stops it, with a page's event stream still open elsewhere; a console that
    does not go is killed and its lab taken down, and that is a failure."""
    served.send_signal(signal.SIGINT)
    try:
        served.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        served.kill()
        served.wait()
        _lab("down", env=env)
        raise AssertionError(f"lab console did not stop within {STOP_S} s of Ctrl-C") from None


def _counter(target: str, invariant: str = "oversold_units") -> str:
    return f'document.querySelector(\'td.counter[data-invariant="{invariant}"][data-target="{target}"]\')'


def _watch_highest(page: BrowserPage, target: str) -> None:
    """Records every value the counter shows, not only those a poll happens to see."""
    page.evaluate(f"""(() => {{
        const cell = {_counter(target)};
        window.highest = window.highest || {{}};
        const note = () => {{
            const value = Number(cell.dataset.value || 0);
            window.highest["{target}"] = Math.max(window.highest["{target}"] ?? 0, value);
        }};
        new MutationObserver(note).observe(cell, {{attributes: true, attributeFilter: ["data-value"]}});
        note();
    }})()""")


def _state_is(*states: str) -> str:
    return f"{list(states)!r}.includes(document.querySelector('#run-state').dataset.state)"


def _markers(component: str, action: str) -> str:
    selector = f'.fault-marker[data-component="{component}"][data-action="{action}"]'
    return (
        f"[{', '.join(repr(c) for c in CHARTS)}].every(id => document.querySelector(`#${{id}} {selector}`))"
    )


def _shortcut_of(page: BrowserPage, component: str, action: str) -> str:
    """The digit the page binds to a fault button: its place among the buttons."""
    index = page.evaluate(
        f"""Array.from(document.querySelectorAll('#faults .fault')).findIndex(
            b => b.dataset.component === {component!r} && b.dataset.action === {action!r})"""
    )
    assert 0 <= index < 9, f"no shortcut for {action} {component}"
    return str(index + 1)


def _save_screenshot(page: BrowserPage, artefacts: Path) -> None:
    shot = page.capture(artefacts / "console-mid-run.png")
    if os.environ.get("LAB_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def _teach_the_flash_sale(page: BrowserPage, console: str, artefacts: Path) -> None:
    """The lesson, pressed through the page; every assertion is about what the room would see."""
    page.open(f"{console}/designs/orders")
    page.wait_for("document.body.dataset.ready === 'true'", timeout_s=20, what="the page loads its design")
    page.click('#presets [data-preset="flash-sale"]')
    ticked = page.evaluate("Array.from(document.querySelectorAll('#targets input:checked'), i => i.value)")
    assert ticked == ["naive", "hardened"]  # the preset's default targets, pre-ticked
    page.click("#start")
    page.wait_for(_state_is("running"), timeout_s=60, what="the run starts")
    for target in ("naive", "hardened"):
        _watch_highest(page, target)

    page.wait_for(
        "document.querySelectorAll('#chart-throughput path.series[d*=L]').length >= 4",
        timeout_s=20,
        what="the charts draw a line per target for each of the first seconds",
    )
    page.click(f'#faults [data-component="{BROKER}"][data-action="pause"]')
    page.wait_for(_markers(BROKER, "pause"), timeout_s=10, what="the broker's pause is on every chart")
    page.press_key(_shortcut_of(page, BROKER, "resume"))
    page.wait_for(_markers(BROKER, "resume"), timeout_s=10, what="the broker's resume is on every chart")

    page.wait_for(
        f"Number({_counter('naive')}.dataset.value) > 0 && {_counter('naive')}.classList.contains('broken')",
        timeout_s=60,
        what="the naive oversold counter turns red above 0",
    )
    page.wait_for(
        f"Number(document.querySelector('#run-clock').dataset.t) >= {MID_RUN_S}",
        timeout_s=30,
        what="the sale is well under way",
    )
    _save_screenshot(page, artefacts)
    page.wait_for(_state_is("auditing", "done"), timeout_s=90, what="the load ends")
    highest = page.evaluate("window.highest")
    assert highest["naive"] > 0
    assert highest["hardened"] == 0  # not once during the whole run
    assert page.evaluate(f"{_counter('hardened')}.classList.contains('holds')")

    page.wait_for(
        "!document.querySelector('#verdict-panel').hidden && !document.querySelector('#report-link').hidden",
        timeout_s=90,
        what="the verdict and the report's link appear",
    )
    outcomes = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('.verdict-target'),"
        " card => [card.dataset.target, card.dataset.outcome]))"
    )
    assert outcomes == {"naive": "broken", "hardened": "holds"}
    assert page.evaluate("fetch(document.querySelector('#report-link').href).then(r => r.status)") == 200
    # The presses are in the report too, on each target's own clock.
    pressed = page.evaluate(
        "fetch(document.querySelector('#report-link').href.replace('report.html', 'report.json'))"
        ".then(r => r.json()).then(report => Object.fromEntries(Object.entries(report.rounds[0].runs)"
        ".map(([label, run]) => [label, run.chaos.filter(s => s.pressed)"
        ".map(s => s.component + ':' + s.action)])))"
    )
    assert pressed == {label: [f"{BROKER}:pause", f"{BROKER}:resume"] for label in ("naive", "hardened")}
    page.wait_for(_state_is("done"), timeout_s=30, what="the run is done")

    assert page.errors == []
    origin = urlsplit(console).netloc
    assert [r["url"] for r in page.requests if urlsplit(r["url"]).netloc not in (origin, "")] == []


def _look_over(page: BrowserPage, console: str, design: str) -> None:
    page.open(f"{console}/designs/{design}")
    page.wait_for("document.body.dataset.ready === 'true'", timeout_s=20, what=f"the {design} page loads")
    links = page.evaluate("Array.from(document.querySelectorAll('#designs a'), a => a.getAttribute('href'))")
    assert sorted(links) == sorted(f"/designs/{name}" for name in DESIGNS)
    assert page.evaluate("document.querySelector('#designs [aria-current=page]').getAttribute('href')") == (
        f"/designs/{design}"
    )
    assert page.evaluate("document.querySelectorAll('#presets .preset').length") >= 2
    assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 20  # a projector's type


def test_every_design_has_a_page_with_its_shortcuts_and_settings(console: str) -> None:
    with browser_page() as page:
        page.open(f"{console}/")
        assert page.evaluate("location.pathname") == "/designs/orders"
        for design in DESIGNS:
            _look_over(page, console, design)
        # A token in the address is kept for the tab and taken out of the address (and the history).
        page.open(f"{console}/designs/shortener?token={TOKEN}")
        page.wait_for("document.body.dataset.ready === 'true'", timeout_s=20, what="the page loads")
        assert page.evaluate("location.search") == ""
        faults = page.evaluate("document.querySelectorAll('#faults .fault').length")
        page.press_key("?")
        keys = page.wait_for(
            "document.querySelector('#shortcuts').open"
            " && Array.from(document.querySelectorAll('#shortcut-list kbd'), k => k.textContent)",
            timeout_s=5,
            what="? shows the shortcuts",
        )
        assert keys == ["s", "x", *(str(n) for n in range(1, min(faults, 9) + 1)), "?"]
        page.press_key("?")
        page.wait_for("!document.querySelector('#shortcuts').open", timeout_s=5, what="? hides them again")

        page.evaluate(f"document.querySelector('#setting-{SETTING}').value = {SETTING_VALUE!r}")
        page.click(f'#settings button[data-setting="{SETTING}"]')
        note = f"document.querySelector('.setting[data-setting={SETTING}] .restarted').textContent"
        said = page.wait_for(
            f"{note}.includes('restarted') && {note}", timeout_s=60, what="the setting is applied"
        )
        assert f"is {SETTING_VALUE}: restarted {SETTING_RESTARTS}" in said
        (applied,) = [r for r in page.requests if r["method"] == "POST"]
        assert applied["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert page.errors == []


def test_a_class_watches_the_flash_sale_break_and_hold(console: str, tmp_path: Path) -> None:
    with browser_page() as page:
        _teach_the_flash_sale(page, console, tmp_path)
