"""The report in a real browser: headless Chromium (Debian package `chromium`) driven over the DevTools
protocol. It loads with no console errors or exceptions, the plots decode (naturalWidth > 0), the
proof trees lay out, and the dimension filter hides the other rows. A screenshot is kept in
runs/test-artifacts/report.png (git-ignored) and its path printed."""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from report_fixture import make_run_dir

from pipeline.report import write_report

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("MICROTHEORY_TEST_ARTIFACTS", ROOT / "runs" / "test-artifacts"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--remote-debugging-port=0", "--window-size=1280,1600"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")


class CDP:
    """A minimal DevTools-protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        try:
            import websocket
        except ImportError:
            pytest.skip("websocket-client not installed (pip install -e '.[dev]')")
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for ev in self.events:
                if ev.get("method") == method:
                    return ev
            self.events.append(json.loads(self.ws.recv()))
        raise AssertionError(f"no {method} within {timeout} s")

    def eval(self, expr: str):
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")


@pytest.fixture()
def browser(tmp_path):
    exe = _chromium()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if proc.poll() is not None:
                pytest.fail(f"chromium exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            if time.monotonic() > end:
                pytest.fail("chromium did not open its DevTools port within 60 s")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        cdp = CDP(pages[0]["webSocketDebuggerUrl"])
        yield cdp
        cdp.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    return out


def test_report_in_headless_chromium(browser, tmp_path):
    run = make_run_dir(tmp_path, with_png=True)
    path = write_report(run)
    cdp = browser
    for domain in ("Page", "Runtime", "Log"):
        cdp.call(f"{domain}.enable")
    cdp.call("Page.navigate", url=path.resolve().as_uri())
    cdp.wait_event("Page.loadEventFired")

    # Plots decode: every <img> is complete with a natural width.
    imgs = cdp.eval("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(imgs) == 2 and all(c and w > 0 for c, w in imgs), imgs
    # Proof trees lay out with a real size; one per answered question.
    boxes = cdp.eval("Array.from(document.querySelectorAll('svg.proof')).map(s => s.getBoundingClientRect().height)")
    assert len(boxes) == 2 and all(h > 40 for h in boxes), boxes

    def visible_dims():
        return cdp.eval("Array.from(document.querySelectorAll('#critiques tr.critique'))"
                        ".filter(r => r.offsetParent !== null).map(r => r.dataset.dimension)")

    assert sorted(visible_dims()) == ["error", "incorrect_information", "lack_justification", "none"]
    cdp.eval("(() => { const s = document.getElementById('dimension-filter'); s.value = 'incorrect_information';"
             " s.dispatchEvent(new Event('change')); })()")
    assert visible_dims() == ["incorrect_information"]
    assert cdp.eval("document.getElementById('critique-count').textContent") == "1 shown"
    cdp.eval("(() => { const s = document.getElementById('dimension-filter'); s.value = 'all';"
             " s.dispatchEvent(new Event('change')); })()")
    assert len(visible_dims()) == 4

    shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / "report.png"
    out.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {out}")
    assert out.stat().st_size > 10_000

    errors = _errors(cdp.events)
    assert not errors, errors


def test_harness_sees_console_errors(browser, tmp_path):
    """The no-errors check above can fail: a page that logs an error and throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom');"
                    "setTimeout(function(){ undefinedFunction(); }, 0);</script></body></html>")
    cdp = browser
    for domain in ("Page", "Runtime", "Log"):
        cdp.call(f"{domain}.enable")
    cdp.call("Page.navigate", url=page.resolve().as_uri())
    cdp.wait_event("Page.loadEventFired")
    cdp.eval("new Promise(r => setTimeout(r, 200))")
    errors = _errors(cdp.events)
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors), errors
