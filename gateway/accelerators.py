"""Which optional accelerators (the ``fast`` extra) a server uses, decided once at start-up.

``pip install 'asgigw[fast]'`` adds httptools (the HTTP/1.1 parser of Node.js, llhttp) and
uvloop (winloop on Windows). They are backends behind seams, never a second copy of a
protocol: ``--http1-parser`` picks the parser under the shared HTTP/1.1 adapter
(gateway/protocols/http1_parser.py), ``--loop`` the event loop (gateway/platform.py). With
``auto`` the fast one is used when it is installed; everything works without them.
"""

from __future__ import annotations

from typing import Literal

from gateway.config import HTTP1ParserChoice, installed

HTTP1ParserName = Literal["h11", "httptools"]

# What ``--http1-parser auto`` tries, in order (the tests narrow it to run every HTTP/1.1
# test with each parser).
PREFERRED_HTTP1_PARSERS: tuple[HTTP1ParserName, ...] = ("httptools", "h11")


def http1_parser_in_use(choice: HTTP1ParserChoice) -> HTTP1ParserName:
    """The parser ``choice`` means here: itself, or for ``auto`` the first one installed."""
    if choice != "auto":
        return choice
    for name in PREFERRED_HTTP1_PARSERS:
        if installed(name):
            return name
    return "h11"
