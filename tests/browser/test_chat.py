#!/usr/bin/env python3
"""The browser client as a person uses it: real headless Chromium pages, driven by Playwright,
against a real `wsstack-local` started here on free ports and stopped on every exit.

  python3 tests/browser/test_chat.py --gateway target/debug/wsstack-local
  python3 tests/browser/test_chat.py --gateway target/debug/wsstack-local --screenshot docs/screenshot.png

Checks: two pages exchange a broadcast and a direct message (a third page does not see the
direct one); an error frame from the API is shown; after the gateway ends a connection (a short
--max-connection-duration) the page says so, reconnects by itself and can send again. The
system Chromium is used (Debian's `chromium`); Playwright never downloads a browser here.
"""

import argparse
import base64
import contextlib
import ctypes
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: the machine is shared with other builds.
TIMEOUT_MS = 15_000
VIEWPORT = {"width": 900, "height": 500}


def _die_with_parent() -> None:
    """Linux: the gateway gets SIGTERM if this script dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Gateway:
    """`wsstack-local` on free ports (--port 0 --web-port 0), its URLs read from its banner."""

    def __init__(self, binary: str, *extra: str):
        self.args = [binary, "--port", "0", "--web-port", "0", "--log-level", "warn", *extra]
        self.proc = None
        self.output: list[str] = []
        self.web_url = ""
        self.ws_url = ""

    def __enter__(self) -> "Gateway":
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if m := re.search(r"WebSocket\s+(ws://\S+)", line):
                self.ws_url = m.group(1)
            if m := re.search(r"Browser\s+(http://\S+)", line):
                self.web_url = m.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.web_url:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{' '.join(self.args)} printed no Browser URL:\n{''.join(self.output)}")
        # Keep draining its output, so a chatty gateway never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Pages:
    """Browser contexts (one per person, so no storage is shared) that fail the test on any
    uncaught exception in the page."""

    def __init__(self, browser: Browser):
        self.browser = browser
        self.contexts = []
        self.page_errors: list[str] = []

    def open(self, web_url: str, username: str) -> Page:
        context = self.browser.new_context(viewport=VIEWPORT)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda e: self.page_errors.append(f"{username}: {e}"))
        page.goto(web_url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        page.fill("#username", username)
        page.click("#connect")
        expect(page.locator("#status")).to_have_text(f"Connected as {username}")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        assert not self.page_errors, f"errors in the page: {self.page_errors}"


def send(page: Page, text: str, to: str | None = None) -> None:
    if to is not None:
        page.locator("#people button", has_text=to).click()
    else:
        page.select_option("#recipient", "")
    page.fill("#text", text)
    page.click("#send")


def conversation(browser: Browser, web_url: str) -> tuple[Page, Page, Pages]:
    """alice, carol and bob connect; alice broadcasts, bob answers her directly, carol leaves
    and bob's direct message to her gets the API's error frame."""
    pages = Pages(browser)
    alice = pages.open(web_url, "alice")
    carol = pages.open(web_url, "carol")
    bob = pages.open(web_url, "bob")
    # bob connected last: his list of people already names alice and carol.
    expect(bob.locator("#people")).to_contain_text("alice")
    expect(bob.locator("#people")).to_contain_text("carol")

    send(alice, "Hello everyone, the API is up!")
    for page in (alice, bob, carol):
        entry = page.locator("#log li.message", has_text="Hello everyone, the API is up!")
        expect(entry).to_have_count(1)
        expect(entry).to_contain_text("alice")

    send(bob, "Hi alice, this one is just for you.", to="alice")
    received = alice.locator("#log li.direct", has_text="Hi alice, this one is just for you.")
    expect(received).to_contain_text("bob → you")
    expect(bob.locator("#log li.direct")).to_contain_text("you → alice")
    # The direct message reached alice; carol's page never shows it.
    expect(carol.locator("#log")).not_to_contain_text("just for you")

    send(alice, "Thanks bob!", to="bob")
    expect(bob.locator("#log li.direct", has_text="Thanks bob!")).to_contain_text("alice → you")

    carol.click("#disconnect")
    expect(carol.locator("#status")).to_have_text("Not connected")
    send(bob, "carol, are you still there?", to="carol")
    error = bob.locator("#log li.error")
    expect(error).to_contain_text("unknown_recipient")
    expect(error).to_contain_text("no connection")
    # The page takes the hint: carol is no longer offered.
    expect(bob.locator("#people")).not_to_contain_text("carol")
    return alice, bob, pages


def test_broadcast_direct_and_error_frame(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin) as gw:
        _, _, pages = conversation(browser, gw.web_url)
        pages.close()


def test_reconnects_after_the_gateway_ends_the_connection(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin, "--max-connection-duration", "4s") as gw:
        pages = Pages(browser)
        dana = pages.open(gw.web_url, "dana")
        log = dana.locator("#log")
        # The page says what happened and what it does about it.
        closed = log.locator("li.system", has_text="Connection closed")
        expect(closed).to_contain_text("went away")
        expect(closed).to_contain_text("Reconnecting in")
        expect(log.locator("li.system", has_text="Connected to")).to_have_count(2)
        expect(dana.locator("#status")).to_have_text("Connected as dana")
        send(dana, "back again")
        expect(log.locator("li.message", has_text="back again")).to_have_count(1)
        pages.close()


# The protocol module's helpers, run in the page: (JavaScript expression, expected value).
HELPER_CASES = [
    # Full jitter: the delay is random() times a bound that doubles per attempt, capped.
    ("m.backoffDelay(1, {initialMs: 500, maxMs: 30000}, () => 1)", 500),
    ("m.backoffDelay(2, {initialMs: 500, maxMs: 30000}, () => 1)", 1000),
    ("m.backoffDelay(4, {initialMs: 500, maxMs: 30000}, () => 0.5)", 2000),
    ("m.backoffDelay(60, {initialMs: 500, maxMs: 30000}, () => 1)", 30000),
    ("m.backoffDelay(3, {initialMs: 500, maxMs: 30000}, () => 0)", 0),
    (
        "m.connectUrl('wss://abc.execute-api.eu-west-1.amazonaws.com/prod', {username: 'Zoë B', token: 'a.b+c'})",
        "wss://abc.execute-api.eu-west-1.amazonaws.com/prod?username=Zo%C3%AB+B&token=a.b%2Bc",
    ),
    ("m.connectUrl('ws://127.0.0.1:3001/dev', {})", "ws://127.0.0.1:3001/dev"),
    ("(() => { try { m.connectUrl('http://x/dev'); return 'accepted'; } catch (e) { return e.message; } })()",
     "the API URL must start with ws:// or wss://, got http://"),
    ("m.usernameProblem('ada')", None),
    ("m.usernameProblem('Zoë B.')", None),
    ("m.usernameProblem('')", "a username must not be empty"),
    ("m.usernameProblem('a'.repeat(65))", "a username has at most 64 characters"),
    ("m.usernameProblem(' ada')", "a username must not start or end with a space"),
    ("m.usernameProblem('a\\u202Eb')", "a username must contain only printable characters"),
    ("m.usernameProblem('a\\nb')", "a username must contain only printable characters"),
    ("m.describeClose(1001, 'Going away')",
     "the server went away (shutdown, idle timeout or the 2-hour limit): Going away (1001)"),
]


def test_protocol_module_helpers(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin) as gw:
        page = browser.new_page()
        page.goto(gw.web_url)
        for expression, expected in HELPER_CASES:
            got = page.evaluate(f"import('./wsstack-client.js').then((m) => {expression})")
            assert got == expected, f"{expression}: got {got!r}, expected {expected!r}"
        page.close()


def screenshot(browser: Browser, gateway_bin: str, path: str) -> None:
    """Two pages of one conversation, side by side, in one PNG."""
    with Gateway(gateway_bin) as gw:
        alice, bob, pages = conversation(browser, gw.web_url)
        send(alice, "See you at the deploy review.")
        expect(bob.locator("#log")).to_contain_text("See you at the deploy review.")
        shots = [base64.b64encode(p.screenshot()).decode() for p in (alice, bob)]
        board = browser.new_page(viewport={"width": 2 * VIEWPORT["width"] + 24, "height": VIEWPORT["height"] + 16})
        images = "".join(f'<img src="data:image/png;base64,{s}">' for s in shots)
        board.set_content(
            '<body style="margin:0;padding:8px;background:#c9ced6;display:flex;gap:8px">' + images + "</body>"
        )
        board.screenshot(path=path)
        board.close()
        pages.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", required=True, help="path of the wsstack-local binary")
    parser.add_argument("--screenshot", metavar="PNG", help="write the screenshot instead of testing")
    args = parser.parse_args()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            if args.screenshot:
                screenshot(browser, args.gateway, args.screenshot)
                print(f"wrote {args.screenshot}")
                return 0
            failed = 0
            tests = (
                test_protocol_module_helpers,
                test_broadcast_direct_and_error_frame,
                test_reconnects_after_the_gateway_ends_the_connection,
            )
            for test in tests:
                started = time.monotonic()
                try:
                    test(browser, args.gateway)
                    print(f"browser: {test.__name__} ... ok ({time.monotonic() - started:.1f} s)")
                except Exception:  # noqa: BLE001 - report every test, then fail
                    failed += 1
                    print(f"browser: {test.__name__} ... FAILED")
                    traceback.print_exc()
            print(f"browser: {len(tests) - failed} passed, {failed} failed")
            return 1 if failed else 0
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
