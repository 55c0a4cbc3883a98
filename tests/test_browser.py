"""Real browsers (headless Chromium and headless Firefox) call /symbolicate/v5 from a page of
another origin exactly as the Firefox Profiler does: CORS preflight and answer, end to end.

The profiler POSTs a string body (so ``Content-Type: text/plain;charset=UTF-8``) and sets a
``User-Agent`` header in ``fetch``; Firefox sends that header, which is not CORS-safelisted,
so it first sends a preflight asking for ``user-agent``. The page reports what it got to the
test's own page server; a byte-transparent relay in front of SymServer records the exchange.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from relay import Relay

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
BROWSERS = {"chromium": CHROMIUM, "firefox": FIREFOX}
INSTALL_HINT = {"chromium": "apt-get install chromium", "firefox": "apt-get install firefox-esr"}
PROFILER_USER_AGENT = "FirefoxProfiler/1.0 (+https://profiler.firefox.com)"
XUL = ["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]
NTDLL = ["wntdll.pdb", "D74F79EB1F8D4A45ABCD2F476CCABACC2"]
# What the profiler sends: one job per library, all of that library's addresses in one stack.
PROFILER_BODY = {"jobs": [{"memoryMap": [XUL], "stacks": [[[0, 11723767], [0, 11723776], [0, 0x10]]]},
                          {"memoryMap": [NTDLL], "stacks": [[[0, 65802]]]}]}
REPORT_SECONDS = 150  # a browser's first start on a busy 2-core machine is slow

PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><script>
const report = value => fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(value)});
window.onerror = (message) => { report({error: "page error: " + message}); };
// Twice: the second answer comes from SymServer's warm lane (every frame cached by the first).
const ask = () => fetch(%(url)s, {method: "POST", headers: {"User-Agent": %(agent)s}, body: %(body)s});
ask().then(async first => {
    const text = await first.text();
    const second = await ask();
    report({status: first.status, text: text, status2: second.status, text2: await second.text()});
  }).catch(error => report({error: String(error)}));
</script></body></html>"""

# Firefox on a fresh profile: no first-run pages, updates, telemetry, captive portal checks,
# safe browsing lists or other background connections; no proxy, even for 127.0.0.1.
FIREFOX_PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "startup.homepage_welcome_url": "",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "trailhead.firstrun.didSeeAboutWelcome": True,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.newtabpage.activity-stream.feeds.section.topstories": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.tabs.warnOnClose": False,
    "browser.sessionstore.resume_from_crash": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.search.update": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "browser.ping-centre.telemetry": False,
    "browser.crashReports.unsubmittedCheck.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "services.settings.server": "data:,#remote-settings-off",
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.trr.mode": 5,
    "network.proxy.type": 0,
    "network.proxy.allow_hijacking_localhost": False,
    "dom.push.enabled": False,
    "geo.enabled": False,
}


def _require(browser: str) -> str:
    path = BROWSERS[browser]
    if path is None:
        pytest.skip(f"{browser} is not installed here ({INSTALL_HINT[browser]}; .ci/run does)")
    return path


class PageServer:
    """The page's origin: serves the pages written to ``directory`` and takes the reports
    the pages POST back to ``/report`` (same origin, so no CORS is involved)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.reports: queue.Queue[dict] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib's name
                path = outer.directory / self.path.lstrip("/").split("?")[0]
                if not path.is_file() or path.parent != outer.directory:
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    outer.reports.put(json.loads(data))
                except ValueError:
                    outer.reports.put({"error": f"unreadable report {data[:200]!r}"})
                self.send_response(204)
                self.end_headers()

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def firefox_profile(directory: Path) -> Path:
    directory.mkdir(parents=True)
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in FIREFOX_PREFS.items()]
    (directory / "user.js").write_text("\n".join(lines) + "\n")
    return directory


def browser_command(browser: str, profile: Path, url: str) -> list[str]:
    if browser == "firefox":
        return [_require("firefox"), "--headless", "--no-remote", "--profile", str(firefox_profile(profile)), url]
    return [_require("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-proxy-server", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", url]


def open_page(browser: str, pages: PageServer, name: str, html: str, workdir: Path) -> dict:
    """Open a page in the browser, wait for the report it posts back, then end the browser."""
    (pages.directory / name).write_text(html)
    command = browser_command(browser, workdir / f"{browser}-profile-{name}", f"{pages.origin}/{name}")
    log = (workdir / f"{browser}-{name}.log").open("wb")
    env = dict(os.environ, MOZ_CRASHREPORTER_DISABLE="1", MOZ_DISABLE_AUTO_SAFE_MODE="1")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env=env)
    try:
        return pages.reports.get(timeout=REPORT_SECONDS)
    except queue.Empty:
        raise AssertionError(f"{browser} reported nothing in {REPORT_SECONDS} s; its output: "
                             f"{(workdir / f'{browser}-{name}.log').read_text(errors='replace')[-1500:]}") from None
    finally:
        end_process_group(process)
        log.close()


def end_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the browser's whole process group (and any child that left it), then SIGKILL."""
    try:
        family = [process.pid] + [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [process.pid]
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
        for pid in family:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=10)
            if not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in family[1:]):
                return
        except (subprocess.TimeoutExpired, psutil.NoSuchProcess):
            pass
        time.sleep(0.5)


@pytest.fixture
def pages(tmp_path):
    server = PageServer(tmp_path)
    yield server
    server.stop()


def profiler_page(url: str) -> str:
    return PAGE % {"url": json.dumps(url), "agent": json.dumps(PROFILER_USER_AGENT),
                   "body": json.dumps(json.dumps(PROFILER_BODY))}


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_the_profilers_request_from_another_origin(trio, pages, tmp_path, browser):
    _require(browser)
    relay = Relay(trio.symserver_port)
    try:
        result = open_page(browser, pages, "profiler.html",
                           profiler_page(f"http://127.0.0.1:{relay.port}/symbolicate/v5"), tmp_path)
        exchanges = relay.exchanges()
    finally:
        relay.stop()
    record = "\n\n".join(exchange.text() for exchange in exchanges)
    print(f"--- {browser}: what went through the relay\n{record}")
    (trio.workdir / f"cors-exchange-{browser}.txt").write_text(record + "\n")
    assert "status" in result, f"{browser} could not read the answer: {result}\n{record}"
    assert result["status"] == result["status2"] == 200, result
    assert result["text2"] == result["text"]  # the warm lane's answer, read by the browser too
    results = json.loads(result["text"])["results"]
    assert [frame["function"] for frame in results[0]["stacks"][0][:2]] == ["XREMain::XRE_mainRun()"] * 2
    assert "function" not in results[0]["stacks"][0][2]
    assert results[1]["stacks"][0][0]["function"] == "KiUserCallbackDispatcher"
    posts = [exchange for exchange in exchanges if exchange.method == "POST"]
    assert len(posts) == 2
    for post in posts:
        assert post.response_header("Access-Control-Allow-Origin") == "*"
        assert post.response_header("Content-Encoding") == "gzip"
    post = posts[0]
    assert post.request_header("Origin") == pages.origin
    assert post.request_header("Content-Type").replace(" ", "").lower() == "text/plain;charset=utf-8"
    assert post.response_header("Content-Encoding") == "gzip"  # browsers accept it, and decode it
    preflights = [exchange for exchange in exchanges if exchange.method == "OPTIONS"]
    if browser == "firefox":
        # Firefox sends the header the profiler sets, so it asks first.
        assert post.request_header("User-Agent") == PROFILER_USER_AGENT
        assert 1 <= len(preflights) <= 2  # (the answer may be cached for the second request)
        preflight = preflights[0]
        assert "user-agent" in preflight.request_header("Access-Control-Request-Headers").lower()
        assert "user-agent" in (preflight.response_header("Access-Control-Allow-Headers") or "").lower()
        assert preflight.status == 204


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_without_cors_headers_the_browser_refuses(pages, tmp_path, symbol_store, browser):
    """The control: the same page against a server that sends no CORS headers is blocked."""
    _require(browser)
    result = open_page(browser, pages, "control.html", profiler_page(symbol_store.url("plain") + "/anything"),
                       tmp_path)
    assert result.get("error", "").startswith("TypeError"), result  # refused, not a bad answer


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

    _require("chromium")
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
