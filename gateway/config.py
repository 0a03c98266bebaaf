"""The one typed, validated configuration object.

The CLI, ``gateway.serve()`` and the tests all build a :class:`Config`; every other module
reads from it and never takes loose keyword arguments. ``Config`` validates itself when it
is created and raises :class:`ConfigError` with a message that names the bad option.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from gateway import config_checks
from gateway.config_values import (
    ACCESS_LOG_FIELDS,
    LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING,
    MAX_WORKERS,
    BindAddress,
    ConfigError,
    KiB,
    ListenerSpec,
    MiB,
    installed,
    parse_log_template,
    parse_rate,
)
from gateway.response_options import DEFAULT_COMPRESS_TYPES

# Re-exported: most modules take every configuration name from here.
__all__ = [
    "ACCESS_LOG_FIELDS",
    "LETS_ENCRYPT",
    "LETS_ENCRYPT_STAGING",
    "MAX_WORKERS",
    "BindAddress",
    "Config",
    "ConfigError",
    "KiB",
    "ListenerSpec",
    "MiB",
    "installed",
    "parse_log_template",
    "parse_rate",
]

LifespanMode = Literal["auto", "on", "off"]
InterfaceMode = Literal["auto", "asgi3", "asgi2"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
TLSVersionText = Literal["1.2", "1.3"]
ClientCertMode = Literal["none", "optional", "required"]
AcmeChallenge = Literal["auto", "tls-alpn-01", "http-01"]
LoopChoice = Literal["auto", "asyncio", "uvloop"]
HTTP1ParserChoice = Literal["auto", "h11", "httptools"]


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a running server needs to know, validated on creation.

    Sizes are in bytes and times in seconds. ``bind`` wins over ``host``/``port`` when it is
    given; otherwise the server listens on ``host:port``.
    """

    bind: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    certfile: str | None = None
    keyfile: str | None = None
    key_password: str | None = None
    # Serve HTTPS with a certificate from the local development CA when no certfile is
    # given (the CLI's default; see gateway/devcerts.py). False keeps Config() plain HTTP.
    dev_tls: bool = False
    ca_dir: str | None = None
    dev_names: tuple[str, ...] = ()
    allow_expired: bool = False
    tls_min_version: TLSVersionText = "1.2"
    ciphers: str | None = None
    # "HOST=CERT,KEY" entries: certificates picked by the client's SNI server name.
    sni_certs: tuple[str, ...] = ()
    ca_certs: str | None = None
    client_cert: ClientCertMode = "none"
    # Seconds between checks of the certificate files for changes; 0 turns it off.
    cert_reload_interval: float = 5.0
    # Certificates from an ACME CA (gateway/acme/, docs/tls.md): each entry is one
    # certificate, "name" or "name,name2,..." for a SAN set.
    acme_domains: tuple[str, ...] = ()
    acme_email: str | None = None
    acme_agree_tos: bool = False
    acme_directory: str | None = None
    acme_staging: bool = False
    acme_ca_bundle: str | None = None
    acme_dir: str | None = None
    acme_challenge: AcmeChallenge = "auto"
    acme_eab_kid: str | None = None
    acme_eab_hmac: str | None = None
    root_path: str = ""
    lifespan: LifespanMode = "auto"
    # How the app is called: "asgi3" app(scope, receive, send), "asgi2" app(scope)(receive,
    # send) (the spec's legacy form), or "auto" to tell them apart (gateway/interface.py).
    interface: InterfaceMode = "auto"
    log_level: LogLevel = "info"
    access_log: bool = True
    # A preset (ACCESS_LOG_PRESETS) or a template of {field} names (ACCESS_LOG_FIELDS).
    access_log_format: str = "default"
    # Append access-log lines to this file instead of stderr; reopened on SIGUSR1 (POSIX).
    access_log_file: str | None = None
    # A logging.config.dictConfig file (JSON, TOML, or YAML with PyYAML) applied last.
    log_config: str | None = None
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    graceful_timeout: float = 30.0
    # Seconds the client may leave what we wrote unread (transport buffer over its high-water
    # mark, or unflushed at close) before the connection is dropped, so a peer that stops
    # reading cannot hold a connection and an app task forever (nginx: send_timeout).
    send_timeout: float = 30.0
    # Seconds a client may pause while sending a request body (not counted while reading
    # is paused for a slow app), so a half-sent upload cannot hold a connection (HTTP/1.1)
    # or a stream and its app task (HTTP/2) forever.
    body_timeout: float = 30.0
    tls_handshake_timeout: float = 10.0
    max_header_size: int = 16 * KiB
    max_body_size: int = 100 * MiB
    backlog: int = 2048
    # Bytes of request body buffered for an app that has not called receive() yet; past
    # this, reading from the client pauses (HTTP/1.1) or window updates stop (HTTP/2).
    read_buffer_size: int = 64 * KiB
    # Bytes of response data buffered before the app's send() waits for the socket.
    write_buffer_size: int = 64 * KiB
    # WebSocket (RFC 6455, RFC 8441, RFC 7692); see docs/websocket.md.
    ws_per_message_deflate: bool = True
    # Largest assembled (and, if compressed, inflated) message; 0 = unlimited. Beyond: close 1009.
    ws_max_message_size: int = 16 * MiB
    # Seconds between server pings (0 = no pings) and for the pong to come back.
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    # Seconds to wait for the peer's close frame after ours before dropping the connection.
    ws_close_timeout: float = 10.0
    # HTTP/2 (RFC 9113): offered by ALPN on TLS, sniffed (prior knowledge) or reached by
    # ``Upgrade: h2c`` on plain listeners; see docs/http2.md. Defaults follow nginx.
    http2: bool = True
    h2_max_concurrent_streams: int = 100
    h2_max_header_list_size: int = 64 * KiB
    h2_initial_window_size: int = 64 * KiB
    h2_max_frame_size: int = 16 * KiB
    # Seconds a response may wait for the peer's flow-control window, or for the peer to
    # read what was sent, before its stream (or connection) is dropped.
    h2_send_timeout: float = 30.0
    # Flood limits per connection per 10 seconds: stream resets by either side (Rapid
    # Reset CVE-2023-44487, MadeYouReset CVE-2025-8671) and control frames (PING, SETTINGS,
    # PRIORITY, WINDOW_UPDATE, empty DATA) beyond two per DATA frame sent, one per request.
    h2_max_resets: int = 200
    h2_max_control_frames: int = 1000
    # Processes serving the same listening sockets; 1 serves in this process. More start
    # a supervisor and that many workers (gateway/workers.py, docs/workers.md).
    workers: int = 1
    # Prometheus metrics on their own listener (HOST:PORT), never on the app's; needs the
    # metrics extra. health_path is answered by the gateway on the app's listeners.
    metrics_bind: str | None = None
    health_path: str | None = None
    # Worker recycling: a worker that has served this many requests (plus a random 0 to
    # jitter of its own) is replaced: the supervisor starts the new one, then drains the
    # old. 0 = never. Like --reload, it needs the supervisor even with one worker.
    max_requests: int = 0
    max_requests_jitter: int = 0
    # Restart the workers (new first, then drain the old) when a watched file changes.
    reload: bool = False
    reload_dirs: tuple[str, ...] = ()
    reload_includes: tuple[str, ...] = ()
    reload_excludes: tuple[str, ...] = ()
    # Static files served by asgigw itself, without calling the app: "URL_PREFIX=DIR"
    # entries, e.g. "/static/=staticfiles"; see docs/static.md.
    static: tuple[str, ...] = ()
    # Cache-Control max-age of static responses in seconds; 0 sends "no-cache".
    static_max_age: int = 3600
    # Edge limits per worker (gateway/limits/, docs/limits.md); 0 or "" = off.
    # Requests and WebSockets running in the app at once; beyond, 503 + Retry-After.
    limit_concurrency: int = 0
    # Connections open at once; beyond, new ones wait in the kernel's listen backlog.
    max_connections: int = 0
    # Connections open at once from one client address; beyond, closed right after accept.
    max_connections_per_ip: int = 0
    # Requests per client address: "N/s" or "N/m" (token bucket); beyond, 429 + Retry-After.
    rate_limit: str = ""
    # Requests one address may send at once on a full bucket; 0 = N of --rate-limit.
    rate_limit_burst: int = 0
    # Client addresses whose buckets are remembered; the least recently seen go first.
    rate_limit_table_size: int = 100_000
    # Client address behind proxies (gateway/proxy_headers.py, docs/proxies.md): trust
    # Forwarded / X-Forwarded-* only from peers in forwarded_allow_ips ("*" = any peer).
    proxy_headers: bool = False
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    # X-Forwarded-Host (and Forwarded host=) replace the Host header only when asked.
    forwarded_host: bool = False
    # PROXY protocol v1/v2 (gateway/proxy_protocol.py) on every --bind listener, and extra
    # listeners that require it while the --bind ones do not.
    proxy_protocol: bool = False
    proxy_protocol_bind: tuple[str, ...] = ()
    # Plain-HTTP listeners that redirect to the HTTPS listener (gateway/https_redirect.py).
    redirect_http: tuple[str, ...] = ()
    # Listening sockets that are not TCP addresses (gateway/listeners.py): Unix domain
    # sockets (POSIX) with an optional file mode, inherited descriptors, and the sockets of
    # systemd socket activation (used when LISTEN_PID names this process).
    uds: tuple[str, ...] = ()
    uds_mode: int | None = None
    fds: tuple[int, ...] = ()
    systemd_sockets: bool = True
    # The event loop and the HTTP/1.1 parser (the ``fast`` extra, docs/options.md): "auto"
    # takes uvloop (winloop on Windows) and httptools when they are installed.
    loop: LoopChoice = "auto"
    http1_parser: HTTP1ParserChoice = "auto"
    # Strict-Transport-Security (RFC 6797) on responses over TLS: max-age in seconds, or
    # None for none; see docs/options.md "Response headers".
    hsts: int | None = None
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False
    # "Name: value" fields added to every response that lacks a field of that name.
    response_headers: tuple[str, ...] = ()
    # On-the-fly response compression (gzip; br and zstd with the [compress] extra); see
    # docs/compression.md. Off by default: BREACH.
    compress: bool = False
    compress_types: tuple[str, ...] = DEFAULT_COMPRESS_TYPES
    compress_min_size: int = 1024
    addresses: tuple[BindAddress, ...] = field(init=False, default=())
    listeners: tuple[ListenerSpec, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if not self.bind and not 0 <= self.port <= 65535:
            # Checked here so the message names --port, not the --bind text built from it.
            raise ConfigError(f"--port {self.port}: must be a number from 0 to 65535")
        if self.bind:
            addresses = tuple(BindAddress.parse(text) for text in self.bind)
        else:
            try:
                addresses = (BindAddress.parse(f"{self._host_for_bind()}:{self.port}"),)
            except ConfigError:
                raise ConfigError(f"--host {self.host!r}: not a host name or IP address") from None
        object.__setattr__(self, "addresses", addresses)
        self._validate()
        object.__setattr__(self, "listeners", self._listener_specs())

    def _listener_specs(self) -> tuple[ListenerSpec, ...]:
        main = [ListenerSpec(address, proxy_protocol=self.proxy_protocol) for address in self.addresses]
        proxied = [
            ListenerSpec(BindAddress.parse(text, "--proxy-protocol-bind"), proxy_protocol=True, extra=True)
            for text in self.proxy_protocol_bind
        ]
        redirect = [
            ListenerSpec(BindAddress.parse(text, "--redirect-http"), proxy_protocol=False, redirect=True, extra=True)
            for text in self.redirect_http
        ]
        return (*main, *proxied, *redirect)

    def _host_for_bind(self) -> str:
        # --host accepts an IPv6 address with or without brackets: ::1 or [::1].
        host = self.host[1:-1] if self.host.startswith("[") and self.host.endswith("]") else self.host
        return f"[{host}]" if ":" in host else host

    def _validate(self) -> None:
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigError("--cert and --key must be given together")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(f"--root-path {self.root_path!r}: must start with '/' and not end with '/'")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"--lifespan {self.lifespan!r}: choose auto, on or off")
        if self.interface not in ("auto", "asgi3", "asgi2"):
            raise ConfigError(f"--interface {self.interface!r}: choose auto, asgi3 or asgi2")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError(f"--log-level {self.log_level!r}: unknown level")
        for name in ("keep_alive_timeout", "header_timeout", "tls_handshake_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be greater than 0")
        if self.body_timeout <= 0:
            raise ConfigError("--body-timeout must be greater than 0")
        if self.send_timeout <= 0:
            raise ConfigError("--send-timeout must be greater than 0")
        if self.graceful_timeout < 0:
            raise ConfigError("--graceful-timeout must be 0 or more")
        if self.max_header_size < 1 * KiB:
            raise ConfigError("--max-header-size must be at least 1024 bytes")
        if self.max_body_size < 0:
            raise ConfigError("--max-body-size must be 0 (unlimited) or more")
        if self.backlog < 1:
            raise ConfigError("--backlog must be at least 1")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be from 1 to {MAX_WORKERS}")
        config_checks.check_recycling(self)
        if self.metrics_bind is not None:
            try:
                address = BindAddress.parse(self.metrics_bind)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("--bind", "--metrics-bind", 1)) from None
            if address.port and address in self.addresses:  # port 0: each gets its own
                raise ConfigError(f"--metrics-bind {self.metrics_bind}: must not be one of the app's listeners")
        if self.health_path is not None and not self.health_path.startswith("/"):
            raise ConfigError(f"--health-path {self.health_path!r}: must start with '/'")
        config_checks.check_tls(self)
        config_checks.check_acme(self)
        config_checks.check_websocket(self)
        if self.read_buffer_size < 1 * KiB or self.write_buffer_size < 1 * KiB:
            raise ConfigError("buffer sizes must be at least 1024 bytes")
        config_checks.check_http2(self)
        config_checks.check_static(self)
        config_checks.check_limits(self)
        config_checks.check_edge(self)
        config_checks.check_accelerators(self)
        config_checks.check_logging(self)
        config_checks.check_response(self)

    @property
    def supervised(self) -> bool:
        """True when a supervisor runs the workers: several, recycled or reloaded."""
        return self.workers > 1 or self.max_requests > 0 or self.reload

    @property
    def acme_directory_url(self) -> str:
        """The ACME directory asked: --acme-directory, staging, or Let's Encrypt production."""
        return self.acme_directory or (LETS_ENCRYPT_STAGING if self.acme_staging else LETS_ENCRYPT)

    @property
    def acme_challenge_type(self) -> str:
        """The challenge answered: as chosen, or tls-alpn-01 unless a plain port 80 serves here."""
        if self.acme_challenge != "auto":
            return self.acme_challenge
        return "http-01" if any(address.port == 80 for address in self.plain_addresses) else "tls-alpn-01"

    @property
    def plain_addresses(self) -> tuple[BindAddress, ...]:
        """Listeners that serve plain HTTP alongside the TLS ones: the --redirect-http ones."""
        return tuple(spec.address for spec in self.listeners if spec.redirect and spec.address is not None)

    @property
    def tls(self) -> bool:
        """True when the listeners speak TLS (a given certificate, the dev one or ACME's)."""
        return self.certfile is not None or self.dev_tls or bool(self.acme_domains)

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
