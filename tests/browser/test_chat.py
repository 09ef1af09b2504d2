#!/usr/bin/env python3
"""The browser client as a person uses it: real headless Chromium pages, driven by Playwright,
against a real `wsstack-local` started here on free ports and stopped on every exit.

  python3 tests/browser/test_chat.py --gateway target/debug/wsstack-local
  python3 tests/browser/test_chat.py --gateway target/debug/wsstack-local --screenshot docs/screenshot.png

Checks: two pages exchange a broadcast and a direct message (a third page does not see the
direct one); an error frame from the API is shown; after the gateway ends a connection (a short
--max-connection-duration) the page says so, reconnects by itself and can send again. Rooms: two
pages join a room and exchange a room message, a third page not in it does not see it, a leave
stops delivery, an invalid room name is shown before anything is sent, and the page's room rules
agree with the API's `invalid_room` answers; a message frame delivered twice (at least once
delivery) is shown once; a forwarded action is answered `accepted`, or refused naming its
requestId; loading the page logs no console error and no request fails. The system Chromium is used (Debian's `chromium`); Playwright never
downloads a browser here.
"""

import argparse
import base64
import contextlib
import ctypes
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request

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
        self.connections_url = ""

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
            if m := re.search(r"@connections\s+(http://\S+)", line):
                self.connections_url = m.group(1)
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


def send(page: Page, text: str, to: str | None = None, room: str | None = None) -> None:
    if to is not None:
        # By the button's exact title: `has_text` matches a substring, case-insensitively, and
        # the button also shows the connection id, which can contain the name ("…BoB…").
        page.locator(f'#people button[title="Send {to} a direct message"]').click()
    elif room is not None:
        page.select_option("#recipient", f"room:{room}")
    else:
        page.select_option("#recipient", "")
    page.fill("#text", text)
    page.click("#send")


def join(page: Page, room: str) -> None:
    page.fill("#room-name", room)
    page.click("#join")
    expect(page.locator("#rooms li", has_text=f"#{room}")).to_have_count(1)
    expect(page.locator("#log li.system", has_text=f"You are in room #{room}.")).to_have_count(1)


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


def test_the_page_loads_without_console_errors(browser: Browser, gateway_bin: str) -> None:
    """Loading the page logs no error in the console and asks for nothing that fails: before it
    named its icon, Chromium asked for /favicon.ico, got 404 and logged an error on every load."""
    with Gateway(gateway_bin) as gw:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            problems: list[str] = []
            page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status}: {r.url}"))
            page.goto(gw.web_url)
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            page.wait_for_load_state("networkidle")
            assert not problems, problems
            icon = page.evaluate(
                "fetch(document.querySelector('link[rel=icon]').href).then(r => [r.status, r.headers.get('content-type')])"
            )
            assert icon == [200, "image/svg+xml"], icon
        finally:
            context.close()


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


ROOM = "design-review"


def room_conversation(browser: Browser, web_url: str) -> tuple[Page, Page, Pages]:
    """erin and frank join a room and talk in it; gus, connected but not a member, sees only
    what is sent to everyone."""
    pages = Pages(browser)
    erin = pages.open(web_url, "erin")
    frank = pages.open(web_url, "frank")
    gus = pages.open(web_url, "gus")
    join(erin, ROOM)
    join(frank, ROOM)
    # The room is offered as a recipient only to its members.
    expect(erin.locator(f"#recipient option[value='room:{ROOM}']")).to_have_count(1)
    expect(gus.locator(f"#recipient option[value='room:{ROOM}']")).to_have_count(0)

    send(erin, "Room check: is the design doc final?", room=ROOM)
    for page in (erin, frank):
        entry = page.locator("#log li.message.in-room", has_text="is the design doc final?")
        expect(entry).to_have_count(1)
        expect(entry.locator(".room")).to_have_text(f"#{ROOM}")
        expect(entry.locator(".from")).to_have_text("erin")
    send(frank, "Final, once the review signs it off.", room=ROOM)
    expect(erin.locator("#log li.message.in-room", has_text="once the review signs")).to_contain_text("frank")

    # A broadcast sent after the room messages reaches gus; the room messages never do.
    send(erin, "Everyone: review at three.")
    for page in (erin, frank, gus):
        expect(page.locator("#log li.message", has_text="review at three")).to_have_count(1)
    expect(gus.locator("#log")).not_to_contain_text("design doc final")
    expect(gus.locator("#log")).not_to_contain_text("once the review signs")
    expect(gus.locator("#log li.in-room")).to_have_count(0)
    return erin, frank, pages


def test_rooms(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin) as gw:
        erin, frank, pages = room_conversation(browser, gw.web_url)

        # frank leaves: the room is gone from his page, and erin's next room message passes him by.
        frank.locator("#rooms li", has_text=f"#{ROOM}").locator("button.leave").click()
        expect(frank.locator("#log li.system", has_text=f"You left room #{ROOM}.")).to_have_count(1)
        expect(frank.locator("#rooms li")).to_have_count(0)
        expect(frank.locator(f"#recipient option[value='room:{ROOM}']")).to_have_count(0)
        send(erin, "frank has left, right?", room=ROOM)
        expect(erin.locator("#log li.in-room", has_text="frank has left")).to_have_count(1)
        send(erin, "Everyone: moved to four.")
        expect(frank.locator("#log li.message", has_text="moved to four")).to_have_count(1)
        expect(frank.locator("#log")).not_to_contain_text("frank has left")

        # An invalid name is refused on the page, saying what and where, before anything is sent.
        erin.fill("#room-name", "design review")
        erin.click("#join")
        problem = erin.locator("#room-problem")
        expect(problem).to_be_visible()
        expect(problem).to_have_text(
            'a room name has " " at position 6: only ASCII letters, digits, -, _, . and : are allowed'
        )
        expect(erin.locator("#rooms li")).to_have_count(1)
        # Past the input's maxlength, as a script could set it.
        erin.evaluate("document.getElementById('room-name').value = 'x'.repeat(65)")
        erin.click("#join")
        expect(problem).to_have_text("a room name has at most 64 characters, got 65")
        # A valid name clears the problem.
        join(erin, "ops:on-call")
        expect(problem).to_be_hidden()
        pages.close()


def test_rooms_are_joined_again_after_a_reconnection(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin, "--max-connection-duration", "4s") as gw:
        pages = Pages(browser)
        hana = pages.open(gw.web_url, "hana")
        join(hana, ROOM)
        # The gateway ends the connection; the new one joins the room again by itself.
        expect(hana.locator("#log li.system", has_text="Connected to")).to_have_count(2)
        expect(hana.locator("#log li.system", has_text=f"You are in room #{ROOM}.")).to_have_count(2)
        send(hana, "still in the room", room=ROOM)
        expect(hana.locator("#log li.in-room", has_text="still in the room")).to_have_count(1)
        expect(hana.locator("#log li.error")).to_have_count(0)
        pages.close()


# Room names the API answers; the page must judge each the same way (None: accepted).
ROOM_NAMES = ["lobby", "A-z_0.9:x", "x" * 64, "", "x" * 65, "café", "a b", "tab\there", "emoji😀", "a/b"]

# A script, run in a page, that sends each name to `join` over a real connection and collects
# what the API answered next to what roomProblem() says.
# A script, run in a page, that sends each name to `join` over a real connection, one at a time
# (the API answers concurrent requests in any order), and collects what the API answered next
# to what roomProblem() says.
ROOM_RULES_SCRIPT = """async ([wsUrl, names]) => {
  const m = await import("./wsstack-client.js");
  const client = new m.WsstackClient(wsUrl, { username: "rules" });
  const opened = new Promise((resolve) => {
    client.addEventListener("state", (e) => e.detail.state === "open" && resolve());
  });
  client.connect();
  await opened;
  const results = [];
  for (const name of names) {
    const answer = new Promise((resolve) => {
      const done = (e) => {
        client.removeEventListener("joined", done);
        client.removeEventListener("errorframe", done);
        resolve(e.detail);
      };
      client.addEventListener("joined", done);
      client.addEventListener("errorframe", done);
    });
    client.join(name);
    results.push({ name, answer: await answer, local: m.roomProblem(name) });
  }
  client.close();
  return results;
}"""


def test_page_room_rules_match_the_api(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin) as gw:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(gw.web_url)
        results = page.evaluate(ROOM_RULES_SCRIPT, [gw.ws_url, ROOM_NAMES])
        page.close()
        assert len(results) == len(ROOM_NAMES)
        for r in results:
            name, answer, local = r["name"], r["answer"], r["local"]
            if answer.get("type") == "joined":
                assert answer["room"] == name, r
                assert local is None, f"the API accepts {name!r}, the page refuses it: {local}"
            else:
                assert answer.get("code") == "invalid_room", r
                assert local is not None, f"the API refuses {name!r} ({answer['message']}), the page accepts it"
                # Both name the same position for a bad character.
                if m := re.search(r"at position (\d+)", answer["message"]):
                    assert f"at position {m.group(1)}:" in local, r
        accepted = [r["name"] for r in results if r["answer"].get("type") == "joined"]
        assert accepted == ["lobby", "A-z_0.9:x", "x" * 64], accepted


# A message frame as a retried fan-out would deliver it: the same id twice.
DUPLICATE_SCRIPT = """async (wsUrl) => {
  const m = await import("./wsstack-client.js");
  const client = new m.WsstackClient(wsUrl, { username: "dedup" });
  window.received = [];
  client.addEventListener("message", (e) => window.received.push(e.detail.id));
  const you = new Promise((resolve) => {
    client.addEventListener("connections", (e) => resolve(e.detail.you));
  });
  client.addEventListener("state", (e) => {
    if (e.detail.state === "open") client.listConnections();
  });
  client.connect();
  window.dedupClient = client;
  return await you;
}"""


def post_to_connection(connections_url: str, connection_id: str, frame: str) -> None:
    url = f"{connections_url}/{urllib.parse.quote(connection_id, safe='')}"
    request = urllib.request.Request(url, data=frame.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200, f"POST {url}: {answer.status}"


def test_a_message_delivered_twice_is_shown_once(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin) as gw:
        assert gw.connections_url, f"no @connections URL in the banner:\n{''.join(gw.output)}"
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(gw.web_url)
        connection_id = page.evaluate(DUPLICATE_SCRIPT, gw.ws_url)
        frame = '{"type":"message","id":"%s","from":"ada","data":"once","sentAt":"2026-11-27T12:00:00Z"}'
        for message_id in ("dup-1", "dup-1", "dup-2", "dup-1", "last-3"):
            post_to_connection(gw.connections_url, connection_id, frame % message_id)
        page.wait_for_function("window.received.includes('last-3')")
        received = page.evaluate("window.received")
        assert received == ["dup-1", "dup-2", "last-3"], f"message events by id: {received}"
        page.evaluate("window.dedupClient.close()")
        page.close()


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
    ("m.roomProblem('lobby')", None),
    ("m.roomProblem('')", "a room name must not be empty"),
    ("m.roomProblem('a'.repeat(65))", "a room name has at most 64 characters, got 65"),
    ("m.roomProblem('café')",
     'a room name has "é" at position 3: only ASCII letters, digits, -, _, . and : are allowed'),
    ("m.roomProblem(42)", "a room name must be a string, got number"),
    ("m.describeClose(1001, 'Going away')",
     "the server went away (shutdown, idle timeout or the 2-hour limit): Going away (1001)"),
]


# A script, run in a page, that sends a forwarded action the gateway accepts and one too large,
# and collects both answers (one at a time: the API answers concurrent requests in any order).
FORWARD_SCRIPT = """async (wsUrl) => {
  const m = await import("./wsstack-client.js");
  const client = new m.WsstackClient(wsUrl, { username: "fwd" });
  const opened = new Promise((resolve) => {
    client.addEventListener("state", (e) => e.detail.state === "open" && resolve());
  });
  client.connect();
  await opened;
  const answer = () => new Promise((resolve) => {
    const done = (e) => {
      client.removeEventListener("accepted", done);
      client.removeEventListener("errorframe", done);
      resolve(e.detail);
    };
    client.addEventListener("accepted", done);
    client.addEventListener("errorframe", done);
  });
  const answers = [];
  let next = answer();
  client.forward("placeOrder", { sku: "A-1", quantity: 2 }, { requestId: "o-1" });
  answers.push(await next);
  next = answer();
  client.forward("placeOrder", "x".repeat(40), { requestId: "o-2" });
  answers.push(await next);
  client.close();
  return answers;
}"""


def test_forwarded_actions_are_accepted_or_refused_by_request(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin, "--forward-action", "placeOrder=32") as gw:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(gw.web_url)
        accepted, refused = page.evaluate(FORWARD_SCRIPT, gw.ws_url)
        page.close()
        assert accepted["type"] == "accepted", accepted
        assert accepted["action"] == "placeOrder" and accepted["requestId"] == "o-1", accepted
        assert accepted["eventId"], accepted
        assert refused["code"] == "data_too_large" and refused["requestId"] == "o-2", refused


# The example backend's binary (`--job-backend`), for the job panel's test.
JOB_BACKEND: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_job_reports_its_progress_on_every_tab_of_the_user(browser: Browser, gateway_bin: str) -> None:
    """Issue 17: the job panel. One tab of ada submits submitJob; the example backend (behind
    the gateway's local bus) pushes the progress through the push API to both of ada's tabs."""
    assert JOB_BACKEND, "--job-backend is required"
    push_port, backend_port = free_port(), free_port()
    backend = subprocess.Popen(
        [JOB_BACKEND, "--listen", f"127.0.0.1:{backend_port}",
         "--push-api-url", f"http://127.0.0.1:{push_port}", "--step-ms", "50"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    try:
        extra = ("--push-port", str(push_port), "--backend-url", f"http://127.0.0.1:{backend_port}/events")
        with Gateway(gateway_bin, *extra) as gw:
            pages = Pages(browser)
            phone = pages.open(gw.web_url, "ada")
            laptop = pages.open(gw.web_url, "ada")
            phone.fill("#job-steps", "3")
            phone.click("#submit-job")
            for page in (phone, laptop):
                done = page.locator('#jobs li[data-state="done"]')
                expect(done).to_have_count(1)
                expect(done).to_contain_text("[1,4,9]")
            # The backend refuses a job it cannot run, and the panel says why (the field's own
            # bound, which would stop the form, is lifted for that).
            phone.eval_on_selector("#job-steps", "e => e.removeAttribute('max')")
            phone.fill("#job-steps", "11")
            phone.click("#submit-job")
            expect(phone.locator('#jobs li[data-state="rejected"]')).to_contain_text("got 11")
            pages.close()
    finally:
        backend.terminate()
        backend.wait(timeout=15)


def test_protocol_module_helpers(browser: Browser, gateway_bin: str) -> None:
    with Gateway(gateway_bin) as gw:
        page = browser.new_page()
        page.goto(gw.web_url)
        for expression, expected in HELPER_CASES:
            got = page.evaluate(f"import('./wsstack-client.js').then((m) => {expression})")
            assert got == expected, f"{expression}: got {got!r}, expected {expected!r}"
        page.close()


def screenshot(browser: Browser, gateway_bin: str, path: str) -> None:
    """Two members of a room in one conversation, side by side, in one PNG."""
    with Gateway(gateway_bin) as gw:
        erin, frank, pages = room_conversation(browser, gw.web_url)
        send(frank, "Thanks. See you there.", room=ROOM)
        expect(erin.locator("#log")).to_contain_text("See you there.")
        # Each page's composer shows the room as the recipient.
        erin.select_option("#recipient", f"room:{ROOM}")
        shots = [base64.b64encode(p.screenshot()).decode() for p in (erin, frank)]
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
    parser.add_argument("--job-backend", help="path of the example backend's job-backend binary")
    args = parser.parse_args()
    global JOB_BACKEND
    JOB_BACKEND = args.job_backend

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            if args.screenshot:
                screenshot(browser, args.gateway, args.screenshot)
                print(f"wrote {args.screenshot}")
                return 0
            failed = 0
            tests = (
                test_the_page_loads_without_console_errors,
                test_protocol_module_helpers,
                test_broadcast_direct_and_error_frame,
                test_reconnects_after_the_gateway_ends_the_connection,
                test_rooms,
                test_rooms_are_joined_again_after_a_reconnection,
                test_page_room_rules_match_the_api,
                test_a_message_delivered_twice_is_shown_once,
                test_forwarded_actions_are_accepted_or_refused_by_request,
                test_a_job_reports_its_progress_on_every_tab_of_the_user,
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
