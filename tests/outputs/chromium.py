"""A headless chromium driven over the DevTools protocol, for the HTML pages' browser tests.

Only what the tests need: open a page, wait for its load event, evaluate an expression, read
what the page logged (console errors, exceptions) and every request it made, emulate dark mode
or print media, and take a screenshot. The browser talks to 127.0.0.1 only (its DevTools port)
and is told not to reach out for updates, sync or component downloads.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

#: A bound on how long the browser may take to answer; not a measurement.
PATIENCE_S = 30.0

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path, or skip the test saying why there is none."""
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no chromium on this machine (`apt-get install chromium`; .ci/run installs it where "
            "it may): the HTML pages' browser tests need a real browser"
        )
    return path


class Page:
    """One tab: events it sent are kept in :attr:`events` as they arrive."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, page=self)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.browser.wait_event(self, "Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression!r} raised: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "warning",
            ):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in (
                "error",
                "warning",
            ):
                found.append(f"log: {params['entry'].get('text')}")
            elif method == "Network.loadingFailed":
                found.append(f"load failed: {params.get('errorText')}")
        return found

    def requests(self) -> list[str]:
        """Every URL the page asked for, in order."""
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))


class Browser:
    """A chromium process and its DevTools connection."""

    def __init__(self, process: subprocess.Popen[bytes], ws: ClientConnection) -> None:
        self.process = process
        self.ws = ws
        self._ids = itertools.count(1)
        self._pages: dict[str, Page] = {}

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        page: Page | None = None,
    ) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            answer = self._receive()
            if answer.get("id") == ident:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def wait_event(self, page: Page, method: str) -> dict[str, Any]:
        for event in page.events:
            if event["method"] == method:
                return event
        while True:
            self._receive()
            if page.events and page.events[-1]["method"] == method:
                return page.events[-1]

    def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=PATIENCE_S))
        if "method" in message:
            page = self._pages.get(message.get("sessionId", ""))
            if page is not None:
                page.events.append(message)
        return message

    def new_page(self, *, width: int = 1200, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return page


@contextlib.contextmanager
def launched() -> Iterator[Browser]:
    """Start headless chromium on a DevTools port of its choosing, on 127.0.0.1."""
    path = require_chromium()
    with tempfile.TemporaryDirectory(prefix="mpnet-chromium-") as profile:
        process = subprocess.Popen(
            [
                path,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        # Chromium says where DevTools listens on stderr, and keeps logging there (D-Bus
        # complaints in a container): a thread reads it all so the pipe never fills.
        listening = threading.Event()
        found: list[str] = []

        def read_stderr() -> None:
            assert process.stderr is not None
            for raw in process.stderr:
                match = re.search(rb"DevTools listening on (ws://\S+)", raw)
                if match and not found:
                    found.append(match.group(1).decode())
                    listening.set()
            listening.set()  # the browser ended: stop waiting

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            if not listening.wait(PATIENCE_S) or not found:
                raise AssertionError(f"chromium did not start (rc={process.poll()})")
            with connect(found[0], max_size=None, open_timeout=PATIENCE_S) as ws:
                yield Browser(process, ws)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(timeout=10)
            if process.stderr is not None:
                process.stderr.close()
