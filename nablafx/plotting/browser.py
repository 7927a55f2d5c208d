"""Open a page in headless Chromium with the network off and report what loaded (tests, screenshots).

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-separated
JSON messages): standard library only, no WebDriver.  The network is emulated offline and host
names resolve nowhere, so a page that needs anything from the network shows it as a failed request.

``python -m nablafx.plotting.browser reports/index.html --screenshot shot.png`` prints the findings.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# evaluated in the page once it has loaded: every image, audio element and vega chart
CHECK_JS = """
(async () => {
  const audios = Array.from(document.querySelectorAll('audio'));
  await Promise.all(audios.map(a => a.readyState >= 1 || a.error ? null : new Promise(res => {
    a.addEventListener('loadedmetadata', res, {once: true}); a.addEventListener('error', res, {once: true});
    setTimeout(res, 8000); if (a.preload === 'none') a.load();
  })));
  return JSON.stringify({
    title: document.title,
    images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                                    width: i.naturalWidth, height: i.naturalHeight})),
    audio: audios.map(a => ({src: a.getAttribute('src'), ok: !a.error && a.readyState >= 1,
                             duration: a.duration, error: a.error ? a.error.code : null})),
    svgs: document.querySelectorAll('svg').length,
    vega_marks: document.querySelectorAll('svg .mark-line path, svg .mark-rect path, svg .mark-symbol path, '
                                          + 'svg g.mark-line, svg g.mark-rect, svg g.mark-symbol').length,
    canvases: document.querySelectorAll('canvas').length,
    height: document.documentElement.scrollHeight,
    text: document.body ? document.body.innerText.length : 0,
  });
})()
"""


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """DevTools protocol over a pipe pair; ``call`` waits for the reply, collecting events."""

    def __init__(self, write_fd: int, read_fd: int):
        self.w, self.r = write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.r], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg is None:
                raise TimeoutError(f"chromium: no reply to {method} within {timeout:g} s")
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"chromium: {method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> dict | None:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg is None:
                return None
            if msg.get("method") == method:
                return msg
            self.events.append(msg)


def inspect_page(page: str | Path, screenshot: str | Path | None = None, width: int = 1400,
                 timeout: float = 60.0, settle_s: float = 1.0, chromium: str | None = None) -> dict:
    """Load ``page`` (a local file) offline; returns what loaded and what failed.

    Result keys: ``failed_requests`` (url, error), ``requests`` (every URL asked for),
    ``canceled_media`` (media requests the element itself stopped after reading enough), ``images``,
    ``audio`` (src, ok), ``svgs``, ``vega_marks``, ``console_errors``, ``exceptions``, ``height``;
    with ``screenshot`` a full-page PNG is written there.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
    url = Path(page).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="nablafx-chromium-")
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()

    def wire():  # in the child: the protocol wants its input on fd 3 and its output on fd 4
        a, b = os.dup(cmd_r), os.dup(res_w)  # first out of the way (the pipes may be fds 3 and 4 already)
        os.dup2(a, 3)  # dup2 onto another fd clears close-on-exec
        os.dup2(b, 4)

    args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
            "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=wire, close_fds=False)  # Python's own fds are non-inheritable (PEP 446)
    os.close(cmd_r)
    os.close(res_w)
    pipe = _Pipe(cmd_w, res_r)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Network.enable", "Runtime.enable", "Log.enable"):
            pipe.call(method, session=session)
        pipe.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, session=session)
        pipe.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
        if pipe.wait_event("Page.loadEventFired", timeout) is None:
            raise TimeoutError(f"{page}: the page did not finish loading within {timeout:g} s")
        time.sleep(settle_s)
        found = json.loads(pipe.call("Runtime.evaluate", {"expression": CHECK_JS, "awaitPromise": True,
                                                         "returnByValue": True}, session=session,
                                     timeout=timeout)["result"]["value"])
        if screenshot is not None:
            height = min(int(found["height"]), 16000)
            pipe.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                             "mobile": False}, session=session)
            time.sleep(0.3)
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=session, timeout=timeout)
            from nablafx.fileio import write_bytes_atomic

            write_bytes_atomic(screenshot, base64.b64decode(shot["data"]))
        pipe.call("Runtime.evaluate", {"expression": "0"}, session=session)  # flush pending events
        requests, failed, canceled, console, exceptions = [], [], [], [], []
        urls = {}
        for e in pipe.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
                requests.append(p["request"]["url"])
            elif m == "Network.loadingFailed":
                item = {"url": urls.get(p["requestId"], "?"), "error": p.get("errorText"), "type": p.get("type")}
                # a media element stops its request once it has what preload asks for: not a failure
                (canceled if p.get("canceled") and p.get("type") == "Media" else failed).append(item)
            elif m == "Network.responseReceived" and p["response"].get("status", 200) >= 400:
                failed.append({"url": p["response"]["url"], "error": f"HTTP {p['response']['status']}"})
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                console.append(p["entry"].get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                exceptions.append(p["exceptionDetails"].get("text"))
        return {**found, "requests": requests, "failed_requests": failed, "canceled_media": canceled,
                "console_errors": console,
                "exceptions": exceptions}
    finally:
        try:
            pipe.send("Browser.close")
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
            proc.wait()
        os.close(cmd_w)
        os.close(res_r)
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nablafx.plotting.browser", description=__doc__.splitlines()[0])
    ap.add_argument("page")
    ap.add_argument("--screenshot", default=None)
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args(argv)
    found = inspect_page(args.page, args.screenshot, args.width)
    bad_img = [i["src"] for i in found["images"] if not i["ok"]]
    bad_audio = [a["src"] for a in found["audio"] if not a["ok"]]
    print(f"{args.page}: {len(found['images'])} images ({len(bad_img)} broken), {len(found['audio'])} audio "
          f"({len(bad_audio)} broken), {found['svgs']} svg, {len(found['failed_requests'])} failed requests, "
          f"{len(found['console_errors']) + len(found['exceptions'])} errors, page height {found['height']} px")
    for item in bad_img + bad_audio + [f"{f['url']}: {f['error']}" for f in found["failed_requests"]]:
        print(f"  broken: {item}")
    return 0 if not (bad_img or bad_audio or found["failed_requests"]) else 1


if __name__ == "__main__":
    sys.exit(main())
