"""A headless Chromium driven over the DevTools protocol, standard library only (``--remote-debugging-pipe``).

For docs/mlflow/screenshots.py: the MLflow UI is a JS app that needs clicks (mode,
expanding a parent run) before a screenshot, which ``chromium --screenshot`` cannot do.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any


class Browser:
    def __init__(self, width: int = 1600, height: int = 1000):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise SystemExit("chromium is needed (apt-get install -y chromium)")
        to_browser, self._commands = os.pipe()
        self._results, from_browser = os.pipe()

        def pipes() -> None:  # the protocol reads commands on fd 3 and answers on fd 4
            high_in, high_out = os.dup(to_browser) + 100, os.dup(from_browser) + 100
            os.dup2(to_browser, high_in)  # out of the way first: either end may be 3 or 4 already
            os.dup2(from_browser, high_out)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=pipes, close_fds=False, stdout=subprocess.DEVNULL, stderr=open("/tmp/cdp-chromium.log", "w"))
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._results, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def goto(self, url: str, settle: float = 6.0) -> None:
        self.call("Page.navigate", session=True, url=url)
        time.sleep(settle)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if self.js(expression):
                return True
            time.sleep(0.5)
        return False

    def drag(self, x: float, y: float, to_x: float, to_y: float, steps: int = 10) -> None:
        """Press the left button at (x, y), move to (to_x, to_y), release (resizing a column)."""
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", session=True, type="mousePressed", x=x, y=y, button="left", clickCount=1)
        for step in range(1, steps + 1):
            self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", button="left",
                      x=x + (to_x - x) * step / steps, y=y + (to_y - y) * step / steps)
            time.sleep(0.05)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseReleased", x=to_x, y=to_y, button="left",
                  clickCount=1)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=5, y=5)  # no tooltip left over

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        self.process.wait(timeout=20)
