"""The dashboard's Stream panel in Debian's chromium, against the shared test broker.

A verifier with `stream_url` set to a topic of this test's own, whose group has a known lag
(records produced to chosen partitions, offsets committed as a worker commits them: the
broker holds a worker's state without a worker, so the test takes seconds). The admin sees the
panel with the broker's numbers, a records/s rate and a sparkline, at 1366 and 375 px, reachable
by keyboard; the group's name is a script payload and shows as text. An operator token, and a
verifier without a stream, get no panel, no error and no `null`.

LIGHTFENCE_SCREENSHOTS=docs/img keeps the panel's picture for docs/dashboard.md.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from lightfence.verifier.api.app import create_app
from lightfence.verifier.auth import Role
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.stream_lag import MIN_RATE_SPAN_S
from stream_lag_support import commit, create_topic, produce, shared_bootstrap, unique
from test_dashboard_xss import CAPTURE_CSP, CHROMIUM, CHROMIUM_ARGS, PAYLOAD, TITLE
from verifier_support import token

SHOTS_ENV = "LIGHTFENCE_SCREENSHOTS"
PANEL = "#stream-panel"


class Verifier:
    def __init__(self, db: str, stream: str | None, group: str) -> None:
        self.app = create_app(
            VerifierConfig(db_url=db, stream_url=stream, stream_group=group), worker=False
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def token(self, role: Role, owner: str | None = None) -> str:
        return token(self.app.state.service, f"{role.value}-x", role, owner)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"DASHBOARD STREAM TEST SKIPPED: {CHROMIUM} is missing (`apt-get install chromium`)"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(
    browser: Any, url: str, secret: str, width: int = 1366, clock: bool = False
) -> tuple[Any, list[str]]:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    if clock:
        page.clock.install()  # the test fires the page's 10 s refresh itself (run_for)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(CAPTURE_CSP)
    page.goto(f"{url}/dashboard/#token={secret}")
    page.wait_for_selector("#app:not([hidden])", timeout=30_000)
    page.wait_for_selector("#landmarks", timeout=30_000)
    return page, errors


def _text(page: Any) -> str:
    return str(page.evaluate("() => document.body.innerText"))


def test_stream_panel_shows_the_brokers_numbers(tmp_path: Path, browser: Any) -> None:
    bootstrap = shared_bootstrap()
    topic, group = unique("lf-panel"), unique("lf-panel-g")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, {0: 4, 1: 3})
    commit(bootstrap, topic, group, {0: 1})
    verifier = Verifier(f"sqlite:///{tmp_path / 'v.db'}", f"kafka://{bootstrap}/{topic}", group)
    try:
        admin = verifier.token(Role.ADMIN)
        h = {"authorization": f"Bearer {admin}"}
        # A first read, then the worker's progress: the page's read then has a rate.
        assert httpx.get(f"{verifier.url}/stream", headers=h).json()["lag_total"] == 6
        commit(bootstrap, topic, group, {0: 4, 1: 1})  # 3 + 1 consumed
        time.sleep(MIN_RATE_SPAN_S)
        page, errors = _open(browser, verifier.url, admin, clock=True)
        page.wait_for_selector(f"{PANEL}:not([hidden]) #stream-partitions", timeout=30_000)
        assert page.inner_text("#stream-lag-total") == "2"
        rows = page.eval_on_selector_all(
            "#stream-partitions tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert rows == [["0", "4", "4", "0"], ["1", "1", "3", "2"]]
        rate = page.inner_text("#stream-rate")
        assert rate.endswith(" records/s") and float(rate.split()[0]) > 0, rate
        assert page.inner_text("#stream-produced") == "0.0 records/s"
        label = page.get_attribute("#stream-sparkline", "aria-label")
        assert label is not None and "now 2" in label
        assert topic in page.inner_text(PANEL) and group in page.inner_text(PANEL)
        # More arrives than is consumed, then the worker catches up: two refreshes later the
        # sparkline has three points and the trend says which way the lag went, in words.
        produce(bootstrap, topic, {1: 3})
        commit(bootstrap, topic, group, {1: 2})
        _refresh(page, "4")
        assert "▲ up 2 since the last read" in page.inner_text("#stream-summary")
        commit(bootstrap, topic, group, {1: 5})
        _refresh(page, "1")
        assert "▼ down 3 since the last read" in page.inner_text("#stream-summary")
        label = page.get_attribute("#stream-sparkline", "aria-label")
        assert label is not None and "3 reads: now 1, lowest 1, highest 4" in label, label
        assert page.locator("#stream-sparkline polyline").count() == 1
        if os.environ.get(SHOTS_ENV):
            page.locator(PANEL).screenshot(
                path=str(Path(os.environ[SHOTS_ENV]) / "dashboard-stream.png")
            )
        # Keyboard: Tab reaches the sparkline, which names its numbers.
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.id") == "stream-sparkline":
                break
        else:
            pytest.fail("Tab never reached the stream sparkline")
        state = page.evaluate(
            "() => ({title: document.title, xss: window.__xss, csp: window.__csp})"
        )
        assert state == {"title": TITLE, "xss": None, "csp": []}, state
        assert not errors, errors
        # A phone: the panel fits, nothing scrolls sideways.
        narrow, errors = _open(browser, verifier.url, admin, width=375)
        narrow.wait_for_selector(f"{PANEL}:not([hidden]) #stream-partitions", timeout=30_000)
        overflow = narrow.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, overflow
        assert narrow.inner_text("#stream-lag-total") == "1" and not errors
        # An operator may not read /stream: no panel, no error.
        page, errors = _open(browser, verifier.url, verifier.token(Role.OPERATOR, "acme"))
        page.wait_for_timeout(500)
        assert page.is_hidden(PANEL) and not errors
        assert "Stream" not in _text(page) and "error" not in page.inner_text("#summary")
    finally:
        verifier.stop()


def _refresh(page: Any, lag_total: str) -> None:
    page.clock.run_for(10_000)
    page.wait_for_function(
        f"() => document.querySelector('#stream-lag-total').textContent === '{lag_total}'",
        timeout=15_000,
    )


def test_group_name_is_text(tmp_path: Path, browser: Any) -> None:
    # A group id is any string (`serve --stream-group`): a script payload shows as text.
    bootstrap = shared_bootstrap()
    topic, group = unique("lf-panel-x"), f"{PAYLOAD}-{unique('g')}"
    create_topic(bootstrap, topic, 1)
    verifier = Verifier(f"sqlite:///{tmp_path / 'v.db'}", f"kafka://{bootstrap}/{topic}", group)
    try:
        page, errors = _open(browser, verifier.url, verifier.token(Role.AUDITOR))
        page.wait_for_selector(f"{PANEL}:not([hidden]) #stream-partitions", timeout=30_000)
        assert PAYLOAD in page.inner_text(PANEL)
        state = page.evaluate(
            "() => ({title: document.title, xss: window.__xss, csp: window.__csp,"
            " imgs: document.querySelectorAll('img[src=x]').length})"
        )
        assert state == {"title": TITLE, "xss": None, "csp": [], "imgs": 0}, state
        assert not errors, errors
    finally:
        verifier.stop()


def test_no_stream_no_panel(tmp_path: Path, browser: Any) -> None:
    verifier = Verifier(f"sqlite:///{tmp_path / 'v.db'}", None, "g")
    try:
        page, errors = _open(browser, verifier.url, verifier.token(Role.AUDITOR))
        page.wait_for_timeout(500)
        assert page.is_hidden(PANEL) and not errors
        text = _text(page)
        for word in ("null", "undefined", "NaN", "Stream"):
            assert word not in text, word
    finally:
        verifier.stop()


def test_broker_down_says_so_in_the_panel(tmp_path: Path, browser: Any) -> None:
    # A stream is configured but nothing answers there: the panel says why, the page works.
    verifier = Verifier(f"sqlite:///{tmp_path / 'v.db'}", "kafka://127.0.0.1:1/records", "g")
    try:
        page, errors = _open(browser, verifier.url, verifier.token(Role.AUDITOR))
        page.wait_for_selector("#stream-error", timeout=30_000)
        assert "lag unavailable: broker 127.0.0.1:1" in page.inner_text("#stream-error")
        assert "error" not in page.inner_text("#summary") and not errors
    finally:
        verifier.stop()
