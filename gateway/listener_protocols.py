"""What each listener runs for an accepted connection (process layer, used by server.py).

- a plain listener: a :class:`~gateway.connection.Connection` at once;
- a TLS listener, or one that expects a PROXY protocol header: a
  :class:`~gateway.pre_tls.ConnectionOpening` first, which reads the header and the first
  byte, then starts TLS itself (so these listeners are created without ``ssl=``);
- a ``--redirect-http`` listener: a plain Connection served by
  :class:`~gateway.https_redirect.HTTPSRedirect` instead of the application.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.connection import Connection
from gateway.https_redirect import AppPassage, HTTP01Responder, HTTPSRedirect, PlainHTTPOnTLSPort, PlainHTTPResponder
from gateway.pre_tls import ConnectionOpening

if TYPE_CHECKING:
    from gateway.acme.challenges import ChallengeFiles
    from gateway.asgi import ASGIApp
    from gateway.config import Config, ListenerSpec
    from gateway.context import ServerContext

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class ListenerProtocols:
    """The protocol factory of every listener of one server, and the responders they share.

    The redirect target is the first application listener's port, known once it is bound
    (:meth:`set_https_port`); until then no redirect listener is bound.
    """

    def __init__(self, context: ServerContext, ssl_context: ssl.SSLContext | None) -> None:
        self._context = context
        self._ssl_context = ssl_context
        # ACME http-01 challenges go to the gateway's own responder with --acme-domain, to
        # the application otherwise (it may run its own ACME client).
        self._challenges = acme_challenge_files(context.config)
        first: PlainHTTPResponder = (
            AppPassage(context.app) if self._challenges is None else HTTP01Responder(self._challenges)
        )
        self.redirect = HTTPSRedirect(0, [first])
        self._plain_on_tls: ASGIApp = PlainHTTPOnTLSPort()
        self._plain_redirect: HTTPSRedirect | None = None
        if context.config.redirect_http:
            self._plain_redirect = HTTPSRedirect(0, close=True)
            self._plain_on_tls = self._plain_redirect

    @property
    def https_port(self) -> int:
        """The port redirects point to; 0 until an application listener is bound."""
        return self.redirect.https_port

    def set_https_port(self, port: int) -> None:
        """Point redirects (``--redirect-http``, plain HTTP on the TLS port) at ``port``."""
        self.redirect.https_port = port
        if self._plain_redirect is not None:
            self._plain_redirect.https_port = port

    def factory(self, listener: ListenerSpec) -> ProtocolFactory:
        """The protocol factory for ``listener`` (its listening call gets no ``ssl=``)."""
        context = self._context
        if listener.redirect:
            redirect = self.redirect
            return lambda: Connection(context, listener_app=redirect)
        ssl_context = self._ssl_context
        if ssl_context is None and not listener.proxy_protocol:
            return lambda: Connection(context)
        plain_on_tls = self._plain_on_tls
        proxy_protocol = listener.proxy_protocol
        challenges = self._challenges
        return lambda: ConnectionOpening(
            context,
            ssl_context=ssl_context,
            proxy_protocol=proxy_protocol,
            plain_http_app=plain_on_tls,
            acme_challenges=challenges,
        )


def acme_challenge_files(config: Config) -> ChallengeFiles | None:
    """Where the ACME challenge answers are, with --acme-domain (imports ACME code only then)."""
    if not config.acme_domains:
        return None
    from gateway.acme.challenges import ChallengeFiles
    from gateway.acme.storage import acme_folder

    return ChallengeFiles(acme_folder(config.acme_dir) / "challenges")
