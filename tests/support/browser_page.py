#!/usr/bin/env python3
"""Loads a page in headless Chromium and waits until it says it is finished, through the DevTools
protocol over a pipe (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4), since
--dump-dom does not wait for a streamed fetch() to end.

    browser_page.py CHROMIUM URL PROFILE_DIR SECONDS

Prints one JSON object: {"state": <body's data-state>, "output": <#output's text>, "seen": [the
distinct lengths of #output observed while waiting]}. Exit 0 once data-state is no longer "idle" or
"streaming"; 1 when SECONDS pass first or Chromium ends. Chromium is stopped by its PID either way."""

import fcntl
import json
import os
import subprocess
import sys
import time

PROBE = ('JSON.stringify({state: document.body ? document.body.dataset.state : null,'
         ' output: (document.getElementById("output") || {}).textContent || ""})')


class DevTools:
    def __init__(self, to_browser, from_browser):
        self.to_browser, self.from_browser, self.buffer, self.next_id = to_browser, from_browser, b"", 0

    def call(self, method, params=None, session=None, deadline=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while time.monotonic() < deadline:  # events come between the answers: skipped
            reply = self.read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise TimeoutError(method)

    def read_message(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_browser, 65536)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


def watch(devtools, url, deadline):
    target = devtools.call("Target.createTarget", {"url": "about:blank"}, deadline=deadline)["targetId"]
    session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                            deadline=deadline)["sessionId"]
    devtools.call("Page.navigate", {"url": url}, session, deadline)
    seen, page = [], {"state": None, "output": ""}
    while time.monotonic() < deadline:
        result = devtools.call("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session, deadline)
        page = json.loads(result["result"].get("value") or "{}") or page
        if page.get("output") and (not seen or seen[-1] != len(page["output"])):
            seen.append(len(page["output"]))
        if page.get("state") not in (None, "idle", "streaming"):
            return dict(page, seen=seen), True
        time.sleep(0.05)
    return dict(page, seen=seen), False


def main():
    chromium, url, profile, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    deadline = time.monotonic() + seconds
    # The child's fd 3 reads our commands, its fd 4 carries the answers: both pipes are first moved
    # above 10, so that making them 3 and 4 here (for pass_fds) overwrites neither of their other ends.
    pipes = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe() + os.pipe()]
    to_browser_r, to_browser_w, from_browser_r, from_browser_w = pipes
    for low, fd in ((3, to_browser_r), (4, from_browser_w)):
        os.dup2(fd, low)
        os.close(fd)
    with open(profile + ".log", "wb") as log:
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + profile,
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, pass_fds=(3, 4))
    os.close(3)
    os.close(4)
    try:
        page, finished = watch(DevTools(to_browser_w, from_browser_r), url, deadline)
    except (EOFError, TimeoutError, RuntimeError) as e:
        page, finished = {"state": None, "output": "", "seen": [], "problem": str(e)}, False
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
    print(json.dumps(page, ensure_ascii=False))
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
