"""`make lab`'s server: JupyterLab on 127.0.0.1 behind a token, started and stopped by PID."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from grader.labs import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_jupyterlab_on_loopback_with_a_token():
    port = free_port()
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith(f"JupyterLab: http://127.0.0.1:{port}/lab?token=")
        token = url.rsplit("=", 1)[1]
        deadline, status = time.time() + 60, None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    status = r.status
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert status == 200
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5)
        assert denied.value.code == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
