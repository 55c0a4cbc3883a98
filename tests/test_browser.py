"""A real browser (headless Chromium) calls /symbolicate/v5 from a page of another origin,
as the Firefox Profiler does: CORS preflight and answer, checked end to end."""

from __future__ import annotations

import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed here (apt-get install chromium; .ci/run does)")

PAGE = """<!doctype html><html><body><pre id="out">waiting</pre><script>
fetch("%(url)s", {method: "POST", headers: {"Content-Type": "application/json"}, body: %(body)s})
  .then(r => r.json())
  .then(j => { document.getElementById("out").textContent = "RESULT:" + JSON.stringify(j); })
  .catch(e => { document.getElementById("out").textContent = "ERROR:" + e; });
</script></body></html>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib's name
        pass


@pytest.fixture
def page_server(tmp_path):
    """Serves tmp_path on its own port: an origin other than the API's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_page(tmp_path, page_url: str) -> str:
    """Load a page in headless Chromium, let its script run, return what it wrote."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000",
         "--dump-dom", page_url], capture_output=True, text=True, timeout=90)
    start = result.stdout.find('id="out">')
    assert start >= 0, f"Chromium printed no page: {result.stderr[-500:]}"
    return result.stdout[start + len('id="out">'):result.stdout.find("</pre>", start)]


def test_a_page_of_another_origin_can_call_symbolicate_v5(trio, page_server):
    directory, origin = page_server
    body = '{"jobs": [{"memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]], "stacks": [[[0, 11723767]]]}]}'
    (directory / "profiler.html").write_text(PAGE % {"url": trio.url("SymServer", "/symbolicate/v5"),
                                                     "body": repr(body)})
    output = run_page(directory, f"{origin}/profiler.html")
    assert output.startswith("RESULT:"), output
    assert "XREMain::XRE_mainRun()" in output and "StartupTimeline.h" in output
    assert trio.wait_for_log("SymServer.log", "OPTIONS /symbolicate/v5 204")  # the preflight


def test_without_cors_headers_the_browser_refuses(trio, page_server, symbol_store):
    """The control: the same page against a server that sends no CORS headers is blocked."""
    directory, origin = page_server
    (directory / "control.html").write_text(PAGE % {"url": symbol_store.url("plain") + "/anything",
                                                    "body": "'{}'"})
    output = run_page(directory, f"{origin}/control.html")
    assert output.startswith("ERROR:TypeError: Failed to fetch"), output  # refused, not a bad answer


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("request_text,expected", [
    ('{"stacks":[[[0,11723767],[1,65802]]],"memoryMap":[["xul.pdb","44E4EC8C2F41492B9369D6B9A059577C2"],'
     '["wntdll.pdb","D74F79EB1F8D4A45ABCD2F476CCABACC2"]],"version":4}',
     ["XREMain::XRE_mainRun() + 0xf7", "StartupTimeline.h:2c9e5f3b1a7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f:121", "KiUserCallbackDispatcher + 0x1a", "ntdll.dll"]),
    ("xul.pdb 44E4EC8C2F41492B9369D6B9A059577C2 0xb2e3f7\nwntdll.pdb/D74F79EB1F8D4A45ABCD2F476CCABACC2 65802",
     ["XREMain::XRE_mainRun() + 0xf7", "inlined", "KiUserCallbackDispatcher"]),
    ("not a request", ['expected "debug_file debug_id offset"']),
])
def test_ui_page_shows_symbolicated_stacks(trio, tmp_path, request_text, expected):
    from urllib.parse import quote

    url = trio.url("SymServer", "/ui?request=" + quote(request_text))
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--hide-scrollbars"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
    assert 'data-state="done"' in dom
    for text in expected:
        assert text.replace('"', "&quot;") in dom or text in dom, text
    screenshot = tmp_path / "ui.png"
    subprocess.run([*common, "--window-size=1200,700", f"--screenshot={screenshot}", url],
                   capture_output=True, timeout=90)
    assert png_size(screenshot) == (1200, 700)
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
    (trio.workdir / f"ui-{len(request_text)}.png").write_bytes(screenshot.read_bytes())


def test_get_root_stays_405(trio):
    assert trio.session.get(trio.url("SymServer", "/"), timeout=10).status_code == 405
