"""The chat example's room page in a real browser: headless Chromium, driven over the
DevTools Protocol (tests/browser.py), runs the page's own chat.js against a
``python -m gateway`` process over TLS, the same site as tests/test_django_chat.py.

Chromium trusts the test certificate by its SPKI hash only (certificate validation stays
on otherwise). The page is fetched over HTTP/2 (ALPN), and the page's WebSocket goes over
HTTP/2 too, by extended CONNECT (RFC 8441), which asgigw allows in its SETTINGS.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

from tests.browser import Browser, Tab, chromium, chromium_binary, spki_sha256
from tests.conftest import CertFiles
from tests.test_django_chat import ChatSite, chat_env, receive_json, site, welcome  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(chromium_binary() is None, reason="no chromium binary")

TEST_TIMEOUT = 40.0
# Non-ASCII (a character outside the BMP too) and long enough for permessage-deflate, which
# Chromium offers and asgigw accepts, to matter.
FROM_TAB = "héllo from tab one ✓ 🚀 " + "and so on, " * 150 + "the end"
STATUS = """(() => {
  const status = document.getElementById("status");
  return status && status.textContent.startsWith("connected over") ? status.textContent : null;
})()"""
LOG = 'Array.from(document.querySelectorAll("#log li"), (item) => item.textContent)'
NAVIGATION = """(() => {
  const [entry] = performance.getEntriesByType("navigation");
  return entry ? {protocol: entry.nextHopProtocol, status: entry.responseStatus} : null;
})()"""
RESOURCES = """performance.getEntriesByType("resource").map((entry) => ({
  path: new URL(entry.name).pathname, protocol: entry.nextHopProtocol, status: entry.responseStatus,
}))"""
# Type into the page's own form and press its Send button: chat.js's submit handler sends
# over the WebSocket, prevents the form post and clears the text field.
SUBMIT = """((name, text) => {
  window.stillTheSamePage = true;
  document.getElementById("chat-name").value = name;
  document.getElementById("chat-text").value = text;
  document.querySelector("#chat-form button[type=submit]").click();
  return document.getElementById("chat-text").value;
})(%s, %s)"""


def log_contains(line: str) -> str:
    return f"{LOG}.includes({json.dumps(line)})"


def exceptions(browser: Browser) -> list[Any]:
    return [event["params"] for event in browser.events if event["method"] == "Runtime.exceptionThrown"]


async def open_connected(browser: Browser, url: str) -> tuple[Tab, str]:
    """A tab on ``url`` once chat.js says it is connected; the status line with it."""
    tab = await browser.open(url)
    try:
        status = await tab.wait_for(STATUS)
    except AssertionError as exc:
        page = await tab.evaluate("[location.href, document.title]")
        raise AssertionError(f"{exc} on {page}") from None
    return tab, status


# "h2": Chromium as it comes; "http1.1": with HTTP/2 turned off, ALPN offers http/1.1 only.
@pytest.mark.parametrize("version", ["h2", "http1.1"])
def test_two_tabs_chat_through_the_room_page(site: ChatSite, cert_files: CertFiles, version: str) -> None:  # noqa: F811
    room = f"browser-{version.replace('.', '')}-{os.urandom(3).hex()}"
    elsewhere_room = f"{room}-elsewhere"
    flags = [f"--ignore-certificate-errors-spki-list={spki_sha256(cert_files.cert)}"]
    if version == "http1.1":
        flags.append("--disable-http2")
    protocol = "h2" if version == "h2" else "http/1.1"
    connected = "connected over wss" + (" (HTTP/2)" if version == "h2" else "")

    async def scenario() -> None:
        async with chromium(*flags) as browser:
            (first, first_status), (second, second_status), (elsewhere, elsewhere_status) = await asyncio.gather(
                open_connected(browser, f"{site.base}/chat/{room}/"),
                open_connected(browser, f"{site.base}/chat/{room}/"),
                open_connected(browser, f"{site.base}/chat/{elsewhere_room}/"),
            )
            tabs = (first, second, elsewhere)
            # With h2, the page came over HTTP/2 (ALPN h2), and so did its WebSocket: the
            # status line shows the welcome's http_version "2". Chromium opens a WebSocket by
            # extended CONNECT (RFC 8441) on its existing HTTP/2 connection to the origin
            # when the server's SETTINGS allow it (asgigw sends ENABLE_CONNECT_PROTOCOL);
            # otherwise it would use an HTTP/1.1 Upgrade on a connection of its own and the
            # status would lack " (HTTP/2)", which is what the http1.1 run checks.
            assert first_status == second_status == elsewhere_status == connected
            for tab in tabs:
                assert await tab.evaluate(NAVIGATION) == {"protocol": protocol, "status": 200}
                # chat.js ran (the status above) and both static files came with 200.
                resources = {entry["path"]: entry for entry in await tab.evaluate(RESOURCES)}
                for path in ("/static/rooms/chat.js", "/static/rooms/chat.css"):
                    assert resources[path]["status"] == 200, resources
                    assert resources[path]["protocol"] == protocol, resources
                assert await tab.evaluate(LOG) == []

            async with site.websocket(room) as listener:
                await welcome(listener, room)

                # 1. The page's own form in tab 1 reaches tab 2, tab 1 and a Python client.
                cleared = await first.evaluate(SUBMIT % (json.dumps("ada"), json.dumps(FROM_TAB)))
                assert cleared == "", "chat.js's submit handler did not send the message"
                for tab in (first, second):
                    await tab.wait_for(log_contains(f"ada {FROM_TAB}"))
                expected = {"type": "message", "room": room, "author": "ada", "message": FROM_TAB}
                assert await receive_json(listener) == expected
                # Sent over the WebSocket, not posted: the page was not reloaded.
                assert await first.evaluate("window.stillTheSamePage === true")

                # 2. A Python websockets client in the same room reaches both tabs.
                await listener.send(json.dumps({"message": "hello from python", "name": "py"}))
                assert (await receive_json(listener))["message"] == "hello from python"
                for tab in (first, second):
                    await tab.wait_for(log_contains("py hello from python"))
                both = [f"ada {FROM_TAB}", "py hello from python"]
                assert await first.evaluate(LOG) == await second.evaluate(LOG) == both

                # 3. Closing tab 2 ends its WebSocket (with h2, one stream of the connection
                # the other tabs share); the others go on.
                await browser.send("Target.closeTarget", {"targetId": second.target})
                await first.evaluate(SUBMIT % (json.dumps("ada"), json.dumps("after closing tab two")))
                assert (await receive_json(listener))["message"] == "after closing tab two"
                await first.wait_for(log_contains("ada after closing tab two"))

            # 4. The tab in the other room saw none of it, and is still connected.
            await asyncio.sleep(0.3)
            assert await elsewhere.evaluate(LOG) == []
            assert await elsewhere.evaluate(STATUS) == connected
            assert exceptions(browser) == []

    logged = len(site.server.stderr)
    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT))
    time.sleep(0.3)  # anything the gateway logs about the killed browser's connections
    during = site.server.stderr[logged:]
    assert "Traceback" not in during and "[ERROR]" not in during and "[WARNING]" not in during, during


def test_without_javascript_the_form_posts_to_the_room(site: ChatSite, cert_files: CertFiles) -> None:  # noqa: F811
    """The room page's fallback: with JavaScript off, the form is a real POST (CSRF token,
    cookie and Chromium's own Origin header, over HTTP/2) that redirects back to the room;
    the view broadcasts the message to the room's WebSockets all the same."""
    room = f"browser-nojs-{os.urandom(3).hex()}"
    url = f"{site.base}/chat/{room}/"
    trust = f"--ignore-certificate-errors-spki-list={spki_sha256(cert_files.cert)}"

    async def scenario() -> None:
        async with chromium(trust) as browser:
            watcher, status = await open_connected(browser, url)
            assert status == "connected over wss (HTTP/2)"
            plain = await browser.open(url, scripts=False)
            await plain.wait_for('document.readyState === "complete" && document.getElementById("chat-form") !== null')
            assert await plain.evaluate('document.getElementById("status").textContent') == "connecting…"
            await plain.evaluate(SUBMIT % (json.dumps("bo"), json.dumps("posted without javascript")))
            # The redirect's page renders the stored message; the watcher gets it by WebSocket.
            await plain.wait_for(log_contains("bo posted without javascript"))
            assert await plain.evaluate("window.stillTheSamePage") is None  # a new page
            assert await plain.evaluate("location.pathname") == f"/chat/{room}/"
            assert await plain.evaluate(NAVIGATION) == {"protocol": "h2", "status": 200}
            await watcher.wait_for(log_contains("bo posted without javascript"))
            assert exceptions(browser) == []

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT))
