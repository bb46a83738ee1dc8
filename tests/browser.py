"""Headless Chromium (Debian's, `make browser`) for the tests that look at pages as a learner would."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chromium:
    """Headless Chromium (Debian's, `make browser`) driven over the DevTools protocol; stopped by its PID."""

    def __init__(self, profile):
        import shutil

        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            if os.environ.get("CI"):
                pytest.fail("CI must run the browser test: `make browser` installs Debian's chromium")
            pytest.skip("no chromium here: `make browser` installs Debian's")
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      f"--remote-debugging-port={self.port}", "--remote-allow-origins=*",
                                      f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline, pages = time.time() + 30, []
        while time.time() < deadline and not pages:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    pages = [p for p in json.load(r) if p["type"] == "page"]
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        import websocket

        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id, self.errors = 0, []
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Log.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                self.errors.append(params["exceptionDetails"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                self.errors.append(params["entry"].get("text", ""))  # a resource that failed to load, among others
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def js(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression, seconds=90):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.js(expression):
                return True
            time.sleep(0.5)
        return False

    def open(self, url: str, ready: str = "document.readyState === 'complete'", seconds: float = 30) -> None:
        """Navigate and wait until `ready` (a JavaScript expression) holds."""
        self.call("Page.navigate", url=url)
        time.sleep(0.2)  # the old document's readyState is 'complete' too
        assert self.wait_for(ready, seconds), f"{url}: {ready} never held"

    def screenshot(self, path) -> bytes:
        """A PNG of the page as rendered (also written to `path`)."""
        import base64

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        Path(path).write_bytes(data)
        return data

    def close(self):
        self.ws.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
