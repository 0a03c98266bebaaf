"""The options of the edge features Nginx used to provide (docs/options.md): certificates from
an ACME CA, client addresses behind proxies, HTTP -> HTTPS, response headers, compression,
limits, metrics and health checks. ``cli_options.serve_options`` adds them after the
server's own options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gateway.response_options import DEFAULT_COMPRESS_TYPES

EDGE_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--acme-domain",
        "acme_domains",
        multiple=True,
        metavar="NAME[,NAME...]",
        help="Get a certificate for NAME from an ACME CA (Let's Encrypt by default); commas make one SAN set; repeatable.",
    ),
    click.option("--acme-email", metavar="ADDRESS", help="Contact address for the ACME account (expiry notices)."),
    click.option(
        "--acme-agree-tos", is_flag=True, help="Agree to the ACME CA's terms of service (required with --acme-domain)."
    ),
    click.option(
        "--acme-directory",
        metavar="URL",
        help="ACME directory URL of another CA (default: Let's Encrypt production).",
    ),
    click.option(
        "--acme-staging", is_flag=True, help="Use Let's Encrypt's staging CA (untrusted certificates; for trials)."
    ),
    click.option(
        "--acme-ca-bundle", metavar="FILE", help="CA bundle to trust the ACME server itself (Pebble, step-ca)."
    ),
    click.option(
        "--acme-dir", metavar="DIR", help="Where the ACME account and certificates are kept (or $ASGIGW_ACME_DIR)."
    ),
    click.option(
        "--acme-challenge",
        type=click.Choice(["auto", "tls-alpn-01", "http-01"]),
        default="auto",
        show_default=True,
        help="How the CA checks the name: tls-alpn-01 on the TLS port, http-01 on port 80; auto picks.",
    ),
    click.option("--acme-eab-kid", metavar="KID", help="External account binding key id (ZeroSSL-style CAs)."),
    click.option("--acme-eab-hmac", metavar="KEY", help="External account binding HMAC key, base64url."),
    click.option(
        "--hsts",
        type=int,
        metavar="SECONDS",
        help="Send Strict-Transport-Security: max-age=SECONDS on responses over TLS (not on plain HTTP).",
    ),
    click.option("--hsts-include-subdomains", is_flag=True, help="Add includeSubDomains to --hsts."),
    click.option(
        "--hsts-preload",
        is_flag=True,
        help="Add preload to --hsts (needs --hsts-include-subdomains and --hsts 31536000 or more).",
    ),
    click.option(
        "--header",
        "response_headers",
        multiple=True,
        metavar='"NAME: VALUE"',
        help="Add this field to every response that has none of that name; repeatable.",
    ),
    click.option(
        "--compress/--no-compress",
        default=False,
        show_default=True,
        help="Compress responses on the fly (gzip; br, zstd with asgigw[compress]). Mind BREACH: docs/compression.md.",
    ),
    click.option(
        "--compress-types",
        default=",".join(DEFAULT_COMPRESS_TYPES),
        show_default=True,
        metavar="TYPE,...",
        help="Media types --compress applies to: type/subtype, type/* or type/*+suffix, comma-separated.",
    ),
    click.option(
        "--compress-min-size",
        type=int,
        default=1024,
        show_default=True,
        help="Content-Length below which --compress leaves a response as it is (bytes).",
    ),
    click.option(
        "--limit-concurrency",
        type=int,
        default=0,
        show_default=True,
        metavar="N",
        help="Requests and WebSockets in the app at once per worker; 503 + Retry-After beyond. 0 = no limit.",
    ),
    click.option(
        "--max-connections",
        type=int,
        default=0,
        show_default=True,
        metavar="N",
        help="Open connections per worker; beyond, new ones wait in the listen backlog. 0 = no limit.",
    ),
    click.option(
        "--max-connections-per-ip",
        type=int,
        default=0,
        show_default=True,
        metavar="N",
        help="Open connections per client address per worker; beyond, closed at once. 0 = no limit.",
    ),
    click.option(
        "--rate-limit",
        default="",
        metavar="N/s|N/m",
        help="Requests (and WebSocket handshakes) per client address per worker; 429 + Retry-After beyond.",
    ),
    click.option(
        "--rate-limit-burst",
        type=int,
        default=0,
        show_default=True,
        metavar="B",
        help="Requests a client address may send at once before --rate-limit applies; 0 = N of --rate-limit.",
    ),
    click.option(
        "--rate-limit-table-size",
        type=int,
        default=100_000,
        show_default=True,
        metavar="N",
        help="Client addresses --rate-limit remembers per worker; the least recently seen are forgotten.",
    ),
    click.option(
        "--metrics-bind",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (its own listener; needs asgigw[metrics]).",
    ),
    click.option(
        "--health-path",
        metavar="PATH",
        help="Answer PATH on the app's listeners without the app: 200 while serving, 503 while draining.",
    ),
    click.option(
        "--proxy-headers",
        is_flag=True,
        help="Take client address, scheme (and host) from Forwarded / X-Forwarded-* sent by trusted proxies.",
    ),
    click.option(
        "--forwarded-allow-ips",
        multiple=True,
        metavar="ADDRESSES",
        help="Proxies trusted by --proxy-headers: IPs, networks (10.0.0.0/8) or *, comma-separated; repeatable."
        "  [default: 127.0.0.1,::1]",
    ),
    click.option(
        "--forwarded-host",
        is_flag=True,
        help="With --proxy-headers, let X-Forwarded-Host / host= replace the Host header.",
    ),
    click.option(
        "--proxy-protocol", is_flag=True, help="Every --bind listener expects a PROXY protocol v1/v2 header first."
    ),
    click.option(
        "--proxy-protocol-bind",
        multiple=True,
        metavar="HOST:PORT",
        help="Extra listener (same TLS) that expects a PROXY protocol header first; repeatable.",
    ),
    click.option(
        "--redirect-http",
        multiple=True,
        metavar="HOST:PORT",
        help="Plain-HTTP listener answering 308 to the https URL (ACME http-01 excepted); repeatable.",
    ),
]
