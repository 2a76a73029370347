"""A real headless Chromium, driven over WebDriver (Debian's ``chromium-driver``) with the standard library's HTTP.

Without the programs the tests skip, except in CI (``CI`` set), where ``.ci/run``
installs ``chromium`` and ``chromium-driver`` and a skip would hide a gap.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Headless, and quiet: no update checks, no sync, no QUIC probes, so any network request seen is the page's own.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"]
#: No proxy: the driver is on this machine, whatever $http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver key of an element reference


def require_chromium() -> None:
    """Skip without Chromium and its driver; fail in CI, which installs them."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"{', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs them, so CI must have them")
        pytest.skip(message)


class Browser:
    """One WebDriver session: open a page, run a script, type, read the logs, take a screenshot."""

    def __init__(self, base: str, session: str) -> None:
        self.base, self.session = base, session

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}/session/{self.session}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def open(self, path: Path) -> None:
        self.call("POST", "/url", {"url": path.as_uri()})

    def run(self, script: str, *args: Any) -> Any:
        """The value of a function body run in the page (``arguments[0]``... are ``args``)."""
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def type(self, css: str, text: str) -> None:
        element = self.call("POST", "/element", {"using": "css selector", "value": css})[_ELEMENT]
        self.call("POST", f"/element/{element}/value", {"text": text})

    def log(self, kind: str) -> list[dict[str, Any]]:
        """The ``browser`` (console) or ``performance`` (DevTools events) log entries since the last call."""
        return self.call("POST", "/se/log", {"type": kind})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("GET", "/screenshot")))


@contextmanager
def chromium(tmp_path: Path) -> Iterator[Browser]:
    """A headless Chromium for the test, its console and network logged; stopped afterwards."""
    require_chromium()
    port = _free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base)
        capabilities = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}}
        request = urllib.request.Request(f"{base}/session", method="POST",
                                         data=json.dumps({"capabilities": {"alwaysMatch": capabilities}}).encode(),
                                         headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=120) as response:
            browser = Browser(base, json.loads(response.read())["value"]["sessionId"])
        try:
            yield browser
        finally:
            browser.call("DELETE", "")
    finally:
        driver.terminate()
        driver.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60  # guards against a hang, not a timing assertion
    while time.monotonic() < deadline:
        try:
            with _OPENER.open(f"{base}/status", timeout=5) as response:
                if json.loads(response.read())["value"]["ready"]:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"chromedriver did not answer at {base} within 60 s")
