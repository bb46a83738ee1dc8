"""`make lab`'s server: JupyterLab on 127.0.0.1 behind a token, started and stopped by PID."""

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from browser import Chromium, free_port

from grader.labs import REPO


@pytest.mark.slow
def test_make_lab_serves_jupyterlab_on_loopback_with_a_token():
    port = free_port()
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = ""
        while not url.startswith("JupyterLab: ") and proc.poll() is None:  # after any venv (re)install output
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


@contextlib.contextmanager
def served_lab(env: dict):
    """`make lab` on a free port: yields (base URL, token); stopped by its process group's id."""
    port = free_port()
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    try:
        line = ""
        while not line.startswith("JupyterLab: ") and proc.poll() is None:  # after any venv (re)install output
            line = proc.stdout.readline().strip()
        token = line.rsplit("=", 1)[1]
        base, deadline = f"http://127.0.0.1:{port}", time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        yield base, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_make_lab_serves_the_no_news_setting_without_touching_home(tmp_path):
    # the learner's own user settings live in a fresh folder: what is served is the course's override
    home = tmp_path / "home"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"), "HOME": str(home),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    with served_lab(env) as (base, token):
        url = f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
        with urllib.request.urlopen(url, timeout=10) as r:
            served = json.load(r)
    properties = served["schema"]["properties"]
    assert properties["fetchNews"]["default"] == "false", "the Jupyter news popup would ask"
    assert properties["checkForUpdates"]["default"] is False
    assert "fetchNews" not in (served.get("settings") or {})  # the default, not a user setting written for them
    assert not (home / ".jupyter" / "lab" / "user-settings").exists() and not (tmp_path / "user-settings").exists()
    assert (REPO / ".mlops" / "lab-settings" / "overrides.json").is_file()


NEWS_QUESTION = "official Jupyter news"


@pytest.mark.slow
def test_in_chromium_make_lab_asks_no_news_question_and_the_progress_view_renders(tmp_path):
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "MLOPS_PROGRESS_DB": str(tmp_path / "p.sqlite")}
    browser = Chromium(tmp_path / "profile")
    try:
        # a control: the same JupyterLab without the course's override asks the news question, so the check can see it
        port = free_port()
        plain = subprocess.Popen([str(REPO / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1",
                                  f"--port={port}", "--allow-root", "--IdentityProvider.token=t0ken",
                                  f"--ServerApp.root_dir={tmp_path}",
                                  f"--LabApp.app_settings_dir={tmp_path / 'no-overrides'}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/lab?token=t0ken")
            assert browser.wait_for(f"document.body.innerText.includes({NEWS_QUESTION!r})"), "control: no question"
            browser.call("Page.navigate", url="about:blank")
        finally:
            os.killpg(plain.pid, signal.SIGTERM)
            plain.wait(timeout=30)
        with served_lab(env) as (base, token):
            browser.call("Page.navigate", url=f"{base}/lab?token={token}")
            assert browser.wait_for("!!document.querySelector('.jp-LabShell .jp-DirListing-item')"), "lab not shown"
            time.sleep(5)  # the question shows within a second or two of the shell
            assert not browser.js(f"document.body.innerText.includes({NEWS_QUESTION!r})")
            browser.call("Page.navigate", url="about:blank")  # leave before the server stops: no reconnect attempts
        # the progress view, as `mlops-grade progress --html` writes it, renders as a table in the browser
        cli = str(REPO / ".venv" / "bin" / "mlops-grade")
        out = subprocess.run([cli, "progress", "--html", str(tmp_path / "p.html")], capture_output=True, text=True,
                             env=env, cwd=REPO, timeout=120)
        assert out.returncode == 0, out.stderr
        browser.errors.clear()
        browser.call("Page.navigate", url=(tmp_path / "p.html").as_uri())
        assert browser.wait_for("document.querySelectorAll('.mlops-progress tbody tr').length > 0", 30)
        rows = browser.js("document.querySelectorAll('.mlops-progress tbody tr').length")
        from grader.labs import lab_modules

        assert rows == len(lab_modules())
        assert "Next lab: 01_tested_code" in browser.js("document.body.innerText") and not browser.errors
    finally:
        browser.close()
