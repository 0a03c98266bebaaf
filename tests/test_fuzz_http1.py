"""Property tests of the HTTP/1.1 adapter: generated, mutated and split byte streams.

Bytes go in through ``feed()`` cut at arbitrary points; what comes out is parsed by h11's
client. For any input: no exception escapes, the output is a sequence of well-formed
responses, a connection the server closes on its own ends with an answer (a 4xx/5xx, or a
response that said it closes), and memory stays within the limits (tests/fuzz_harness.py).
Valid requests cut anywhere give the app the same requests and the client the same answers
as when they arrive in one read. Profiles and budgets: tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from typing import Any

import h11
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.config import Config
from tests.fuzz_harness import Outcome, exchange, http1_adapter, http1_bound, split


def parser_choices() -> list[dict[str, Any]]:
    """Config options selecting each HTTP/1.1 parser this install has (h11; httptools with [fast])."""
    if "http1_parser" not in {option.name for option in dataclasses.fields(Config)}:
        return [{}]  # one parser, no option
    choices: list[dict[str, Any]] = [{"http1_parser": "h11"}]
    if importlib.util.find_spec("httptools") is not None:
        choices.append({"http1_parser": "httptools"})
    return choices


PARSERS = parser_choices()
PARSER_IDS = [choice.get("http1_parser", "default") for choice in PARSERS]

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
FIELD_VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC 0123456789/.;=,", max_size=20).map(str.strip)
PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%", max_size=20).map(lambda path: "/" + path)
# Byte strings a mutation splices in: the pieces request smuggling and parser confusion are
# made of (RFC 9112 §6.3, §11.2).
SPLICES = [
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"\x00",
    b":",
    b"\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\xff\xfe",
    b"x" * 5000,
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One valid HTTP/1.1 request: a body framed by Content-Length or chunked, or none."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS"]))
    target = draw(PATH) + draw(st.sampled_from(["", "?a=1", "?q=%20x&q=2"]))
    fields = [("Host", "example.test")]
    fields += draw(st.lists(st.tuples(TOKEN.map(lambda name: "x-" + name), FIELD_VALUE), max_size=4))
    body = draw(st.binary(max_size=300)) if method in ("POST", "PUT") else b""
    framing = draw(st.sampled_from(["length", "chunked"])) if body else "none"
    if framing == "length":
        fields.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        sizes = draw(st.lists(st.integers(1, 120), min_size=1, max_size=5))
        pieces, start = [], 0
        for size in sizes:
            if start < len(body):
                piece = body[start : start + size]
                pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
                start += size
        if start < len(body):
            pieces.append(b"%x\r\n%s\r\n" % (len(body) - start, body[start:]))
        body = b"".join(pieces) + b"0\r\n\r\n"
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields) + "\r\n"
    return head.encode() + body


PIPELINES = st.lists(requests(), min_size=1, max_size=4).map(b"".join)
CUTS = st.lists(st.integers(0, 5000), max_size=8)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid pipeline with a few bytes flipped, spliced, dropped or repeated."""
    data = bytearray(draw(PIPELINES))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "splice", "delete", "repeat", "truncate"]))
        if kind == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif kind == "splice":
            data[position:position] = draw(st.sampled_from(SPLICES) | st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif kind == "repeat":
            data[position:position] = data[position : position + draw(st.integers(1, 64))]
        else:
            del data[position:]
    return bytes(data)


def run(chunks: list[bytes], *, eof: bool = False, **config: Any) -> Outcome:
    outcome: Outcome = asyncio.run(exchange(http1_adapter, chunks, eof=eof, bound=http1_bound, **config))
    outcome.check()
    return outcome


def responses(outcome: Outcome) -> list[tuple[int, list[tuple[bytes, bytes]], bytes, bool]]:
    """Parse the output as answers to what the app saw (then GETs): status, fields, body, complete.

    Raises h11.RemoteProtocolError on anything that is not a well-formed response.
    """
    methods = [scope["method"] for scope in outcome.scopes if scope["type"] == "http"]
    client = h11.Connection(h11.CLIENT)
    if outcome.output:  # h11 reads b"" as the end of the stream
        client.receive_data(outcome.output)
    answers: list[tuple[int, list[tuple[bytes, bytes]], bytes, bool]] = []
    while True:
        method = methods[len(answers)] if len(answers) < len(methods) else "GET"
        client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        status, fields, body = 0, [], b""
        while True:
            event = client.next_event()
            if event is h11.PAUSED:
                # h11 takes a 2xx to CONNECT as the start of a tunnel (RFC 9110 §9.3.6): for
                # a client the answer is complete and what follows is not HTTP any more.
                if status:
                    answers.append((status, fields, body, True))
                return answers
            if event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                if status:
                    answers.append((status, fields, body, False))
                return answers
            if type(event) is h11.InformationalResponse:
                if event.status_code == 101:
                    return answers  # the rest is another protocol
                continue
            if type(event) is h11.Response:
                status = event.status_code
                fields = [(name, value) for name, value in event.headers if name != b"date"]
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                answers.append((status, fields, body, True))
                break
        if client.their_state is not h11.DONE or client.our_state is not h11.DONE:
            return answers
        client.start_next_cycle()


def check_answered(outcome: Outcome, eof: bool) -> None:
    """The output is well-formed; a connection closed by the server ends with a defined answer."""
    answers = responses(outcome)
    assert all(complete for *_, complete in answers), answers
    if outcome.closed and not eof and not outcome.upgraded_to_http2:
        assert answers, f"closed without an answer: {outcome.output!r}"
        status, fields, _, _ = answers[-1]
        says_close = (b"connection", b"close") in [(name, value.lower()) for name, value in fields]
        served = [scope for scope in outcome.scopes if scope["type"] == "http"]
        if len(answers) <= len(served) and served[len(answers) - 1]["method"] == "CONNECT" and status < 300:
            return  # a client reads what follows a 2xx to CONNECT as a tunnel, not as HTTP
        # RFC 9112 §9.3: an HTTP/1.0 request without keep-alive ends its connection.
        http10 = len(answers) <= len(served) and served[len(answers) - 1]["http_version"] == "1.0"
        assert status >= 400 or says_close or http10 or status == 101, answers[-1]


def summary(outcome: Outcome) -> tuple[Any, ...]:
    """What must not depend on how the bytes were cut: requests, bodies, answers."""
    bodies: list[bytes] = []
    current = b""
    for message in outcome.received:
        if message["type"] == "http.request":
            current += message.get("body", b"")
            if not message.get("more_body", False):
                bodies.append(current)
                current = b""
    return outcome.scopes, bodies, responses(outcome), outcome.closed


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
@given(PIPELINES, CUTS)
@example(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", [40, 41, 60])
def test_valid_requests_split_anywhere_give_the_same_result(
    parser: dict[str, Any], data: bytes, cuts: list[int]
) -> None:
    whole = run([data], **parser)
    pieces = run(split(data, cuts), **parser)
    assert summary(pieces) == summary(whole)
    # Every request was served: as many 200s as requests.
    assert [status for status, *_ in responses(whole)] == [200] * len(whole.scopes)
    check_answered(whole, eof=False)


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
@given(mutated(), CUTS, st.booleans())
@example(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", [], False)
@example(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + b"x" * 5000, [30], False)
@example(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", [], True)
@example(b"HEAD / HTTP/1.0\r\nHost: a\r\n\r\n", [], False)  # found by fuzz/: 1.0 closes after its answer
def test_mutated_requests_get_a_defined_answer(parser: dict[str, Any], data: bytes, cuts: list[int], eof: bool) -> None:
    outcome = run(split(data, cuts), eof=eof, **parser)
    check_answered(outcome, eof)


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
@given(
    st.binary(max_size=600),
    CUTS,
    st.booleans(),
    st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\nHost: a\r\n"]),
)
def test_arbitrary_bytes_get_a_defined_answer(
    parser: dict[str, Any], data: bytes, cuts: list[int], eof: bool, prefix: bytes
) -> None:
    outcome = run(split(prefix + data, cuts), eof=eof, **parser)
    check_answered(outcome, eof)


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
@given(st.integers(1, 12_000), st.sampled_from([b"GET / HTTP/1.1\r\nX-Long: ", b"x" * 3]), CUTS)
def test_an_endless_head_is_refused_within_the_header_limit(
    parser: dict[str, Any], size: int, start: bytes, cuts: list[int]
) -> None:
    # Bytes that never end a head: answered 431 once past --max-header-size, held until then.
    outcome = run(split(start + b"a" * size, cuts), **parser)
    answers = responses(outcome)
    if len(start) + size > 4096:
        assert outcome.closed and answers and answers[-1][0] in (400, 431), answers
    else:
        assert not outcome.closed and not answers
