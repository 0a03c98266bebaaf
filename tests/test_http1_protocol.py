"""HTTP1Protocol unit tests: bytes in, ASGI messages and bytes out, h11 CLIENT as the peer.

No sockets: :class:`tests.fake_transport.FakeTransport` stands in for the connection and
records writes, pauses and timers. Each test runs its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import pytest

from tests.apps.http1 import FAILURES
from tests.fake_transport import CLIENT, SERVER, HTTP1Harness, Peer, response_parts

# Every test here runs with each HTTP/1.1 parser (h11, httptools): results must be identical.
pytestmark = pytest.mark.usefixtures("http1_parser")

Message = dict[str, Any]


async def respond(send: Any, body: bytes = b"ok", status: int = 200, headers: list[Any] | None = None) -> None:
    """A complete response with a Content-Length."""
    fields = [(b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message["body"]
        if not message.get("more_body", False):
            return body


class Recorder:
    """An app that keeps every scope, reads the whole body and answers ``path:body``."""

    def __init__(self) -> None:
        self.scopes: list[Message] = []

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        body = await read_body(receive)
        await respond(send, scope["path"].encode() + b":" + body)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- scope --------------------------------------------------------------------------


def test_scope_fields() -> None:
    app = Recorder()

    async def main() -> None:
        harness = HTTP1Harness(app, state={"shared": ["x"]})
        peer = Peer()
        harness.feed(
            peer.request(
                target="/caf%C3%A9/a%2Fb?q=%20x&q=2",
                headers=[("X-Dup", "one"), ("Accept", "*/*"), ("x-dup", "two")],
            )
        )
        await harness.finish()

    run(main())
    scope = app.scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"] in ("2.3", "2.4", "2.5")
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    # Percent-decoded as UTF-8, %2F included; raw_path keeps the bytes as sent.
    assert scope["path"] == "/café/a/b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"q=%20x&q=2"
    assert scope["root_path"] == ""
    # Lower-cased names, order and duplicates kept.
    assert scope["headers"] == [
        (b"host", b"example.test"),
        (b"x-dup", b"one"),
        (b"accept", b"*/*"),
        (b"x-dup", b"two"),
    ]
    assert scope["client"] == CLIENT
    assert scope["server"] == SERVER
    assert scope["state"] == {"shared": ["x"]}
    assert "http.response.trailers" in scope["extensions"]
    assert "http.response.early_hint" in scope["extensions"]
    assert "tls" not in scope["extensions"]


def test_scope_scheme_https_on_tls() -> None:
    app = Recorder()

    async def main() -> None:
        harness = HTTP1Harness(app, tls=True)
        harness.feed(Peer().request())
        await harness.finish()

    run(main())
    assert app.scopes[0]["scheme"] == "https"


def test_scope_root_path_prefixes_path() -> None:
    app = Recorder()

    async def main() -> bytes:
        harness = HTTP1Harness(app, root_path="/api")
        harness.feed(Peer().request(target="/items/%C3%A9?x=1"))
        await harness.finish()
        return harness.transport.take()

    output = run(main())
    scope = app.scopes[0]
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items/é"
    assert scope["raw_path"] == b"/api/items/%C3%A9"
    assert scope["query_string"] == b"x=1"
    assert output.endswith("/api/items/é:".encode())


def test_scope_http10() -> None:
    app = Recorder()

    async def main() -> None:
        harness = HTTP1Harness(app)
        harness.feed(b"GET /old HTTP/1.0\r\n\r\n")
        await harness.finish()

    run(main())
    assert app.scopes[0]["http_version"] == "1.0"
    assert app.scopes[0]["headers"] == []


def test_state_is_a_copy_per_request() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.append(dict(scope["state"]))
        scope["state"]["added"] = True
        await respond(send)

    state = {"db": "pool"}

    async def main() -> None:
        harness = HTTP1Harness(app, state=state)
        peer = Peer()
        harness.feed(peer.request())
        await harness.finish()
        peer.events(harness.transport.take())
        peer.next_cycle()
        harness.feed(peer.request())
        await harness.settle(lambda: len(seen) == 2)
        await harness.finish()

    run(main())
    # A key an app adds to its scope's state does not leak into the next request's.
    assert seen == [{"db": "pool"}, {"db": "pool"}]
    assert state == {"db": "pool"}


# -- request body ---------------------------------------------------------------------


def test_request_body_streams_in_pieces() -> None:
    received: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if not message.get("more_body"):
                break
        await respond(send)

    async def main() -> bytes:
        harness = HTTP1Harness(app)
        peer = Peer()
        harness.feed(peer.head("POST", "/upload", [("transfer-encoding", "chunked")]) + peer.data(b"abc"))
        await harness.settle(lambda: len(received) == 1)
        harness.feed(peer.data(b"defg"))
        await harness.settle(lambda: len(received) == 2)
        harness.feed(peer.end())
        await harness.finish()
        return harness.transport.take()

    output = run(main())
    assert received == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"defg", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    assert output.startswith(b"HTTP/1.1 200 ")


def test_disconnect_after_response_complete() -> None:
    after: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        await read_body(receive)
        await respond(send)
        after.append(await asyncio.wait_for(receive(), 1))

    async def main() -> None:
        harness = HTTP1Harness(app)
        harness.feed(Peer().request("POST", body=b"data"))
        await harness.finish()

    run(main())
    assert after == [{"type": "http.disconnect"}]


def test_disconnect_when_client_goes_away() -> None:
    received: list[Message] = []
    send_error: list[BaseException] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        received.append(await receive())
        received.append(await receive())  # waits: the response is not sent yet
        try:
            await respond(send)
        except OSError as exc:  # ASGI 2.4: send() after a disconnect raises OSError
            send_error.append(exc)

    async def main() -> None:
        harness = HTTP1Harness(app)
        harness.feed(Peer().request("POST", body=b"all"))
        await harness.settle(lambda: len(received) == 1)
        await asyncio.sleep(0.01)
        assert len(received) == 1
        harness.protocol.connection_lost()
        await harness.finish()

    run(main())
    assert received == [
        {"type": "http.request", "body": b"all", "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert len(send_error) == 1


def test_disconnect_when_client_closes_mid_body() -> None:
    received: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "http.disconnect":
                return

    async def main() -> None:
        harness = HTTP1Harness(app)
        peer = Peer()
        harness.feed(peer.head("POST", "/", [("content-length", "10")]) + peer.data(b"abc"))
        await harness.settle(lambda: len(received) == 1)
        assert harness.protocol.feed_eof() is False
        await harness.finish()
        assert harness.transport.closed

    run(main())
    assert received == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
    ]


# -- response framing -----------------------------------------------------------------


def test_streamed_response_is_chunked_and_sent_as_it_comes() -> None:
    async def main() -> tuple[bytes, bytes, HTTP1Harness]:
        go_on = asyncio.Event()

        async def app(scope: Message, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await go_on.wait()
            await send({"type": "http.response.body", "body": b"second", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        harness = HTTP1Harness(app)
        harness.feed(Peer().request())
        await harness.settle(lambda: b"first" in harness.transport.output)
        early = harness.transport.take()
        go_on.set()
        await harness.finish()
        return early, harness.transport.take(), harness

    early, rest, harness = run(main())
    assert b"transfer-encoding: chunked\r\n" in early.lower()
    assert early.endswith(b"\r\n\r\n5\r\nfirst\r\n")
    assert rest == b"6\r\nsecond\r\n0\r\n\r\n"
    peer = Peer()
    peer.request()
    _, response, body, end = response_parts(peer.events(early + rest))
    assert response.status_code == 200 and (b"x-a", b"1") in response.headers
    assert body == b"firstsecond" and end is not None
    assert not harness.transport.closed


def test_http10_without_length_is_close_delimited() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    async def main() -> tuple[bytes, bool]:
        harness = HTTP1Harness(app)
        harness.feed(b"GET / HTTP/1.0\r\nhost: x\r\n\r\n")
        await harness.finish()
        return harness.transport.take(), harness.transport.closed

    output, closed = run(main())
    head, _, body = output.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower()
    assert body == b"one two"
    assert closed


def test_head_sends_no_body_bytes() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await respond(send, b"hello")

    async def main() -> tuple[bytes, bool]:
        harness = HTTP1Harness(app)
        harness.feed(Peer().request("HEAD"))
        await harness.finish()
        return harness.transport.take(), harness.transport.closed

    output, closed = run(main())
    assert output.endswith(b"\r\n\r\n") and b"hello" not in output
    assert b"content-length: 5\r\n" in output
    peer = Peer()
    peer.request("HEAD")
    _, response, body, end = response_parts(peer.events(output))
    assert response.status_code == 200 and body == b"" and end is not None
    assert not closed


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_send_no_body(status: int) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> list[Any]:
        harness = HTTP1Harness(app)
        peer = Peer()
        harness.feed(peer.request(target="/first"))
        await harness.finish()
        first = peer.events(harness.transport.take())
        peer.next_cycle()
        # The next response on the same connection parses: nothing stray was sent.
        harness.feed(peer.request(target="/second"))
        await harness.settle(lambda: bool(harness.transport.output))
        await harness.finish()
        return first + peer.events(harness.transport.take())

    events = run(main())
    responses = [event for event in events if type(event) is h11.Response]
    assert [response.status_code for response in responses] == [status, status]
    assert not any(type(event) is h11.Data for event in events)
    assert all(b"transfer-encoding" not in dict(response.headers) for response in responses)


# -- connection management --------------------------------------------------------------


def test_keep_alive_two_requests_one_connection() -> None:
    app = Recorder()

    async def main() -> tuple[list[Any], HTTP1Harness]:
        harness = HTTP1Harness(app, keep_alive_timeout=7.5)
        peer = Peer()
        harness.feed(peer.request(target="/a"))
        await harness.finish()
        events = peer.events(harness.transport.take())
        assert harness.transport.timeouts[-1] == (7.5, "keep-alive idle")
        assert harness.protocol.idle
        peer.next_cycle()
        harness.feed(peer.request("POST", "/b", body=b"xyz"))
        await harness.settle(lambda: len(app.scopes) == 2)
        await harness.finish()
        return events + peer.events(harness.transport.take()), harness

    events, harness = run(main())
    bodies = [bytes(event.data) for event in events if type(event) is h11.Data]
    assert bodies == [b"/a:", b"/b:xyz"]
    assert not harness.transport.closed


def test_pipelined_requests_answered_in_order() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await read_body(receive)
        # The first request is the slowest: answers must still come in request order.
        await asyncio.sleep({"/1": 0.03, "/2": 0.0, "/3": 0.01}[scope["path"]])
        await respond(send, scope["path"].encode())

    async def main() -> bytes:
        harness = HTTP1Harness(app)
        # One buffer holding three requests (h11's client would wait for each answer).
        data = Peer().request(target="/1")
        data += Peer().request("POST", "/2", body=b"body of two")
        data += Peer().request(target="/3")
        harness.feed(data)
        await harness.settle(lambda: harness.transport.output.count(b"HTTP/1.1 200") == 3)
        await harness.finish()
        return harness.transport.take()

    output = run(main())
    peer = Peer()
    bodies = []
    for target in ("/1", "/2", "/3"):
        peer.request(target=target)
        events = peer.events(output)
        output = b""
        bodies.append(response_parts(events)[2])
        peer.next_cycle()
    assert bodies == [b"/1", b"/2", b"/3"]


def test_connection_close_request_closes_after_response() -> None:
    async def main() -> tuple[bytes, bool]:
        harness = HTTP1Harness(Recorder())
        harness.feed(Peer().request(headers=[("connection", "close")]))
        await harness.finish()
        return harness.transport.take(), harness.transport.closed

    output, closed = run(main())
    assert b"\r\nconnection: close\r\n" in output.lower()
    assert output.endswith(b"/:")
    assert closed


def test_http10_closes_by_default() -> None:
    async def main() -> tuple[bytes, bool]:
        harness = HTTP1Harness(Recorder())
        harness.feed(b"GET /x HTTP/1.0\r\n\r\n")
        await harness.finish()
        return harness.transport.take(), harness.transport.closed

    output, closed = run(main())
    assert output.startswith(b"HTTP/1.1 200 ") and output.endswith(b"/x:")
    assert closed


def test_header_timeout_armed_then_cleared() -> None:
    async def main() -> HTTP1Harness:
        harness = HTTP1Harness(Recorder(), header_timeout=3.0)
        harness.feed(b"GET / HTTP/1.1\r\nhost: a\r\n")
        harness.protocol.timeout("request head incomplete")
        return harness

    harness = run(main())
    assert harness.transport.timeouts[0] == (3.0, "no request head")
    assert (3.0, "request head incomplete") in harness.transport.timeouts
    assert harness.transport.closed and harness.transport.output == b""


# -- Expect: 100-continue, trailers, early hints ------------------------------------------------


def test_expect_continue_sent_when_app_first_receives() -> None:
    async def main() -> tuple[bytes, bytes, list[Any]]:
        may_read = asyncio.Event()

        async def app(scope: Message, receive: Any, send: Any) -> None:
            await may_read.wait()
            body = await read_body(receive)
            await respond(send, body)

        harness = HTTP1Harness(app)
        peer = Peer()
        head = peer.head("POST", "/", [("expect", "100-continue"), ("content-length", "5")])
        harness.feed(head)
        await asyncio.sleep(0.02)
        before = harness.transport.take()
        may_read.set()
        await harness.settle(lambda: b"100 Continue" in harness.transport.output)
        harness.feed(peer.data(b"hello") + peer.end())
        await harness.finish()
        after = harness.transport.take()
        return before, after, peer.events(after)

    before, after, events = run(main())
    # RFC 9110 §10.1.1: no 100 until the app asks for the body.
    assert before == b""
    assert after.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    informational, response, body, _ = response_parts(events)
    assert [event.status_code for event in informational] == [100]
    assert response.status_code == 200 and body == b"hello"


def test_expect_continue_not_sent_when_app_answers_without_reading() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await respond(send, b"no thanks", status=417)

    async def main() -> tuple[bytes, bool]:
        harness = HTTP1Harness(app)
        harness.feed(Peer().head("PUT", "/", [("expect", "100-continue"), ("content-length", "1000")]))
        await harness.finish()
        return harness.transport.take(), harness.transport.closed

    output, closed = run(main())
    assert b" 100 " not in output
    assert output.startswith(b"HTTP/1.1 417 ") and output.endswith(b"no thanks")
    # The client still holds its body for a 100 that will not come: the connection ends,
    # and the response says so (the next bytes could be that body or a new request).
    assert b"\r\nconnection: close\r\n" in output
    assert closed


def test_trailers_on_chunked_response() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})

    async def main() -> bytes:
        harness = HTTP1Harness(app)
        harness.feed(Peer().request(headers=[("te", "trailers")]))
        await harness.finish()
        return harness.transport.take()

    output = run(main())
    assert output.endswith(b"0\r\nx-checksum: abc123\r\n\r\n")
    peer = Peer()
    peer.request(headers=[("te", "trailers")])
    _, response, body, end = response_parts(peer.events(output))
    assert response.status_code == 200 and body == b"part1part2"
    assert end.headers == [(b"x-checksum", b"abc123")]


def early_hint_app() -> Any:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        links = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
        await send({"type": "http.response.early_hint", "links": links})
        await respond(send, b"page")

    return app


def test_early_hints_send_103_with_links() -> None:
    async def main() -> bytes:
        harness = HTTP1Harness(early_hint_app())
        harness.feed(Peer().request())
        await harness.finish()
        return harness.transport.take()

    output = run(main())
    peer = Peer()
    peer.request()
    informational, response, body, _ = response_parts(peer.events(output))
    assert [event.status_code for event in informational] == [103]
    assert informational[0].headers == [
        (b"link", b"</style.css>; rel=preload; as=style"),
        (b"link", b"</app.js>; rel=preload; as=script"),
    ]
    assert response.status_code == 200 and body == b"page"


def test_no_early_hints_for_http10() -> None:
    async def main() -> bytes:
        harness = HTTP1Harness(early_hint_app())
        harness.feed(b"GET / HTTP/1.0\r\n\r\n")
        await harness.finish()
        return harness.transport.take()

    output = run(main())
    # RFC 9110 §15.2: a server must not send a 1xx response to an HTTP/1.0 client.
    assert output.startswith(b"HTTP/1.1 200 ")
    assert b"103" not in output and b"link:" not in output.lower()


# -- flow control -------------------------------------------------------------------------


def test_reading_pauses_while_app_does_not_read() -> None:
    async def main() -> None:
        may_read = asyncio.Event()
        total = []

        async def app(scope: Message, receive: Any, send: Any) -> None:
            await may_read.wait()
            total.append(len(await read_body(receive)))
            await respond(send)

        harness = HTTP1Harness(app, read_buffer_size=4096)
        peer = Peer()
        harness.feed(peer.head("POST", "/", [("content-length", str(64 * 1024))]))
        for _ in range(3):
            harness.feed(peer.data(b"x" * 2048))
        await asyncio.sleep(0.01)
        # Past read_buffer_size unread bytes, the adapter stops reading from the client.
        assert harness.transport.reading_paused and harness.transport.pauses == 1
        may_read.set()
        await harness.settle(lambda: not harness.transport.reading_paused)
        # Reading resumed once the app took the bytes; the rest of the body follows.
        for _ in range(29):
            harness.feed(peer.data(b"x" * 2048))
        harness.feed(peer.end())
        await harness.finish()
        assert total == [64 * 1024]

    run(main())


def test_send_waits_while_transport_is_paused_for_writing() -> None:
    async def main() -> None:
        sent = []

        async def app(scope: Message, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for index in range(5):
                await send({"type": "http.response.body", "body": b"%d" % index, "more_body": True})
                sent.append(index)
            await send({"type": "http.response.body", "body": b""})

        harness = HTTP1Harness(app)
        harness.transport.set_write_paused(True)
        harness.feed(Peer().request())
        await asyncio.sleep(0.02)
        # The first body piece was handed over; its send() waits for the transport to drain.
        assert sent == []
        harness.transport.set_write_paused(False)
        await harness.finish()
        assert sent == [0, 1, 2, 3, 4]
        assert harness.transport.take().endswith(b"1\r\n4\r\n0\r\n\r\n")

    run(main())


# -- application errors -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAILURES))
def test_app_errors(name: str, caplog: pytest.LogCaptureFixture) -> None:
    behaviour, expected, traceback = FAILURES[name]

    async def app(scope: Message, receive: Any, send: Any) -> None:
        await behaviour(send)

    async def main() -> tuple[bytes, bool]:
        harness = HTTP1Harness(app)
        harness.feed(Peer().request())
        await harness.finish()
        await harness.settle()
        return harness.transport.take(), harness.transport.closed

    with caplog.at_level("DEBUG", logger="gateway"):
        output, closed = run(main())
    errors = [record for record in caplog.records if record.name == "gateway.error" and record.levelname == "ERROR"]
    assert len(errors) == 1, [record.getMessage() for record in caplog.records]
    assert (errors[0].exc_info is not None) is traceback
    if traceback:
        assert errors[0].exc_info is not None and errors[0].exc_info[0] is not None
    peer = Peer()
    peer.request()
    if expected == "500":
        _, response, body, end = response_parts(peer.events(output))
        assert response.status_code == 500 and body == b"Internal Server Error" and end is not None
    else:
        # The client must never take a cut-off body for a complete response.
        with pytest.raises(h11.RemoteProtocolError):
            peer.events(output, closed=True)
        assert closed


def test_reading_resumes_after_a_response_that_left_the_body_unread() -> None:
    async def main() -> None:
        may_answer = asyncio.Event()

        async def app(scope: Message, receive: Any, send: Any) -> None:
            await may_answer.wait()
            await respond(send, b"without reading")

        harness = HTTP1Harness(app, read_buffer_size=4096)
        peer = Peer()
        # The whole body arrives (and pauses reading) before the app answers.
        harness.feed(peer.request("POST", "/", body=b"b" * 10000))
        await asyncio.sleep(0.01)
        assert harness.transport.reading_paused
        may_answer.set()
        await harness.finish()
        peer.events(harness.transport.take())
        # The exchange is over; the next request must be read.
        assert not harness.transport.reading_paused
        peer.next_cycle()
        harness.feed(peer.request())
        await harness.settle(lambda: bool(harness.transport.output))
        await harness.finish()
        assert response_parts(peer.events(harness.transport.take()))[2] == b"without reading"

    run(main())


def test_keep_alive_after_every_kind_of_message() -> None:
    # One connection, one request after another, each of a kind that leaves a parser in a
    # different state: chunked body, body left unread, a non-WebSocket Upgrade answered
    # 200, an extension method (llhttp does not know it: h11 judges), then a plain GET.
    # httptools reuses its parser only where that is safe; every answer must come.
    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["path"] != "/unread":
            await read_body(receive)
        await respond(send, f"{scope['method']} {scope['path']}".encode())

    chunked = b"POST /chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    unread = b"POST /unread HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
    upgrade = b"GET /upgrade HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: foo/1\r\n\r\n"
    extension = b"BREW /extension HTTP/1.1\r\nhost: x\r\n\r\n"
    plain = b"GET /plain HTTP/1.1\r\nhost: x\r\n\r\n"
    expected = [b"POST /chunked", b"POST /unread", b"GET /upgrade", b"BREW /extension", b"GET /plain"]

    async def main() -> bytes:
        harness = HTTP1Harness(app)
        for index, request in enumerate((chunked, unread, upgrade, extension, plain)):
            harness.feed(request)
            await harness.settle(lambda index=index: harness.transport.output.count(b"HTTP/1.1 200") == index + 1)
        await harness.finish()
        assert not harness.transport.closed
        return harness.transport.take()

    output = run(main())
    for body in expected:
        assert body in output
    assert output.count(b"HTTP/1.1 200") == len(expected)


# -- graceful shutdown and connections that have not sent their first request yet --------


def test_shutdown_answers_the_first_request_of_a_connection_accepted_just_before() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send)

    async def main() -> None:
        harness = HTTP1Harness(app)
        harness.context.shutting_down = True
        harness.protocol.shutdown()
        # Not closed: its client sent (or is sending) a request it expects an answer to...
        assert not harness.transport.closed
        assert harness.transport.timeouts[-1] == (1.0, "shutting down")
        peer = Peer()
        harness.feed(peer.request())
        await harness.settle(lambda: harness.transport.closed)
        _, response, body, _ = response_parts(peer.events(harness.transport.take()))
        assert response.status_code == 200 and body == b"ok"
        # ...answered with Connection: close, then the connection closes.
        assert (b"connection", b"close") in response.headers

    asyncio.run(main())


def test_shutdown_waits_for_a_head_that_is_arriving() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send)

    async def main() -> None:
        harness = HTTP1Harness(app)
        peer = Peer()
        request = peer.request()
        harness.feed(request[:10])
        harness.context.shutting_down = True
        harness.protocol.shutdown()
        assert not harness.transport.closed
        harness.feed(request[10:])
        await harness.settle(lambda: harness.transport.closed)
        _, response, _, _ = response_parts(peer.events(harness.transport.take()))
        assert response.status_code == 200

    asyncio.run(main())


def test_shutdown_closes_a_keep_alive_connection_between_requests_at_once() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send)

    async def main() -> None:
        harness = HTTP1Harness(app)
        peer = Peer()
        harness.feed(peer.request())
        await harness.settle()
        assert not harness.transport.closed
        harness.context.shutting_down = True
        harness.protocol.shutdown()
        assert harness.transport.closed

    asyncio.run(main())
