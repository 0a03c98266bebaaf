"""The one typed, validated configuration object.

The CLI, ``gateway.serve()`` and the tests all build a :class:`Config`; every other module
reads from it and never takes loose keyword arguments. ``Config`` validates itself when it
is created and raises :class:`ConfigError` with a message that names the bad option.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Literal

from gateway.response_options import DEFAULT_COMPRESS_TYPES, check_response_options

LifespanMode = Literal["auto", "on", "off"]
InterfaceMode = Literal["auto", "asgi3", "asgi2"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
TLSVersionText = Literal["1.2", "1.3"]
ClientCertMode = Literal["none", "optional", "required"]
AcmeChallenge = Literal["auto", "tls-alpn-01", "http-01"]

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# A DNS name as a CA will issue for it: labels of letters, digits and hyphens (a "*." first
# label is a wildcard, which needs dns-01, a challenge asgigw cannot answer).
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
LoopChoice = Literal["auto", "asyncio", "uvloop"]
HTTP1ParserChoice = Literal["auto", "h11", "httptools"]

KiB = 1024
MiB = 1024 * KiB
# Access-log fields a --access-log-format template may name, as {name} (docs/logging.md);
# gateway/access_log.py implements each one.
ACCESS_LOG_FIELDS = (
    "client",
    "client_host",
    "method",
    "path",
    "query",
    "path_query",
    "target",
    "status",
    "bytes",
    "duration",
    "duration_ms",
    "http_version",
    "scheme",
    "host",
    "tls_version",
    "user_agent",
    "referer",
    "request_id",
    "outcome",
    "time",
    "time_iso",
    "pid",
)
ACCESS_LOG_PRESETS = ("default", "common", "combined", "json")
LOG_CONFIG_SUFFIXES = (".json", ".toml", ".yaml", ".yml")

# Far beyond any core count asgigw runs on; a typo like --workers 4000 should not fork-bomb.
MAX_WORKERS = 512


# The libuv loop: uvloop on POSIX, its Windows port winloop on Windows (same API).
UVLOOP_MODULE = "winloop" if sys.platform == "win32" else "uvloop"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (start-up stays cheap)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # already imported without a spec (made at run time)
        return module in sys.modules


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option and the problem."""


def parse_log_template(template: str) -> list[str | tuple[str]]:
    """Split an access-log template into literal text and ``(field,)`` parts.

    ``{name}`` is a field from ACCESS_LOG_FIELDS; ``{{`` and ``}}`` are literal braces.
    Unknown names and unbalanced braces raise ConfigError naming --access-log-format.
    """
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    position = 0
    while position < len(template):
        char = template[position]
        if template.startswith("{{", position) or template.startswith("}}", position):
            literal.append(char)
            position += 2
        elif char == "{":
            end = template.find("}", position)
            name = template[position + 1 : end] if end > 0 else ""
            if end < 0 or "{" in name:
                raise ConfigError(f"--access-log-format {template!r}: unclosed '{{' (write {{{{ for a brace)")
            if name not in ACCESS_LOG_FIELDS:
                known = ", ".join(ACCESS_LOG_FIELDS)
                raise ConfigError(f"--access-log-format: unknown field {{{name}}}; known fields: {known}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((name,))
            position = end + 1
        elif char == "}":
            raise ConfigError(f"--access-log-format {template!r}: unmatched '}}' (write }}}} for a brace)")
        else:
            literal.append(char)
            position += 1
    if literal:
        parts.append("".join(literal))
    if not any(isinstance(part, tuple) for part in parts):
        raise ConfigError(
            f"--access-log-format {template!r}: choose {', '.join(ACCESS_LOG_PRESETS)} or a {{field}} template"
        )
    return parts


@dataclass(frozen=True, slots=True)
class BindAddress:
    """One listening address, parsed from ``HOST:PORT`` or ``[IPv6]:PORT``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, option: str = "--bind") -> BindAddress:
        """Parse ``127.0.0.1:8000``, ``localhost:8000``, ``[::1]:8443`` or ``:8000``.

        ``option`` names the option the text came from in the error message.
        """
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ConfigError(f"{option} {text!r}: expected [IPv6]:PORT, e.g. [::1]:8443")
            host, port_text = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ConfigError(f"{option} {text!r}: {host!r} is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ConfigError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
            if ":" in host:
                raise ConfigError(f"{option} {text!r}: write IPv6 addresses in brackets, [::1]:8443")
            host = host or "0.0.0.0"
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"{option} {text!r}: port must be a number from 0 to 65535")
        return cls(host, int(port_text))

    def url_host(self) -> str:
        """The host as it appears in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ``localhost``."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One listening address and what it serves: the app (HTTPS, or HTTP with --no-tls),
    with or without a PROXY protocol header first, or the --redirect-http responder."""

    address: BindAddress
    proxy_protocol: bool = False
    redirect: bool = False


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
            ListenerSpec(BindAddress.parse(text, "--proxy-protocol-bind"), proxy_protocol=True)
            for text in self.proxy_protocol_bind
        ]
        redirect = [
            ListenerSpec(BindAddress.parse(text, "--redirect-http"), proxy_protocol=False, redirect=True)
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
        self._validate_recycling()
        if self.metrics_bind is not None:
            try:
                address = BindAddress.parse(self.metrics_bind)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("--bind", "--metrics-bind", 1)) from None
            if address.port and address in self.addresses:  # port 0: each gets its own
                raise ConfigError(f"--metrics-bind {self.metrics_bind}: must not be one of the app's listeners")
        if self.health_path is not None and not self.health_path.startswith("/"):
            raise ConfigError(f"--health-path {self.health_path!r}: must start with '/'")
        self._validate_tls()
        self._validate_acme()
        self._validate_websocket()
        if self.read_buffer_size < 1 * KiB or self.write_buffer_size < 1 * KiB:
            raise ConfigError("buffer sizes must be at least 1024 bytes")
        self._validate_http2()
        self._validate_static()
        self._validate_edge()
        self._validate_accelerators()
        self._validate_logging()
        self._validate_response()

    def _validate_accelerators(self) -> None:
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigError(f"--loop {self.loop!r}: choose auto, asyncio or uvloop")
        if self.http1_parser not in ("auto", "h11", "httptools"):
            raise ConfigError(f"--http1-parser {self.http1_parser!r}: choose auto, h11 or httptools")
        # Asked for by name, the module must be there; "auto" falls back instead.
        if self.loop == "uvloop" and not installed(UVLOOP_MODULE):
            raise ConfigError(f"--loop uvloop: {UVLOOP_MODULE} is not installed (pip install 'asgigw[fast]')")
        if self.http1_parser == "httptools" and not installed("httptools"):
            raise ConfigError("--http1-parser httptools: httptools is not installed (pip install 'asgigw[fast]')")

    def _validate_logging(self) -> None:
        if self.access_log_format not in ACCESS_LOG_PRESETS:
            parse_log_template(self.access_log_format)
        if self.access_log_file is not None:
            if not self.access_log:
                raise ConfigError("--access-log-file has no effect with --no-access-log")
            folder = os.path.dirname(os.path.abspath(self.access_log_file))
            if os.path.isdir(self.access_log_file) or not os.path.isdir(folder):
                raise ConfigError(f"--access-log-file {self.access_log_file!r}: not a file in an existing directory")
        if self.log_config is not None:
            suffix = os.path.splitext(self.log_config)[1].lower()
            if suffix not in LOG_CONFIG_SUFFIXES:
                raise ConfigError(f"--log-config {self.log_config!r}: expected a .json, .toml, .yaml or .yml file")
            if not os.path.isfile(self.log_config):
                raise ConfigError(f"--log-config {self.log_config!r}: no such file")
            if suffix in (".yaml", ".yml") and importlib.util.find_spec("yaml") is None:
                raise ConfigError(
                    f"--log-config {self.log_config!r}: YAML needs PyYAML (pip install pyyaml); or use JSON/TOML"
                )

    def _validate_response(self) -> None:
        try:
            check_response_options(
                self.hsts,
                self.hsts_include_subdomains,
                self.hsts_preload,
                self.response_headers,
                self.compress_types,
                self.compress_min_size,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _validate_edge(self) -> None:
        for text in self.forwarded_allow_ips:
            if text.strip() != "*":
                try:
                    ipaddress.ip_network(text.strip(), strict=False)
                except ValueError:
                    raise ConfigError(
                        f"--forwarded-allow-ips {text!r}: not an IP address, a network (10.0.0.0/8) or *"
                    ) from None
        if self.forwarded_host and not self.proxy_headers:
            raise ConfigError("--forwarded-host needs --proxy-headers")
        for text in self.proxy_protocol_bind:
            BindAddress.parse(text, "--proxy-protocol-bind")
        for text in self.redirect_http:
            BindAddress.parse(text, "--redirect-http")
        if self.redirect_http and not self.tls:
            raise ConfigError("--redirect-http redirects to the HTTPS listener: it needs TLS (drop --no-tls)")

    def _validate_recycling(self) -> None:
        if self.max_requests < 0 or self.max_requests_jitter < 0:
            raise ConfigError("--max-requests and --max-requests-jitter must be 0 or more")
        if self.max_requests_jitter and not self.max_requests:
            raise ConfigError("--max-requests-jitter needs --max-requests N")
        if not self.reload and (self.reload_dirs or self.reload_includes or self.reload_excludes):
            raise ConfigError("--reload-dir, --reload-include and --reload-exclude need --reload")
        for folder in self.reload_dirs:
            if not os.path.isdir(folder):
                raise ConfigError(f"--reload-dir {folder!r}: not a directory")

    @property
    def supervised(self) -> bool:
        """True when a supervisor runs the workers: several, recycled or reloaded."""
        return self.workers > 1 or self.max_requests > 0 or self.reload

    def _validate_static(self) -> None:
        for entry in self.static:
            prefix, equals, folder = entry.partition("=")
            if not equals or not folder:
                raise ConfigError(f"--static {entry!r}: expected URL_PREFIX=DIR, e.g. /static/=staticfiles")
            if not (prefix.startswith("/") and prefix.endswith("/")):
                raise ConfigError(f"--static {entry!r}: URL_PREFIX must start and end with '/', e.g. /static/")
            if not os.path.isdir(folder):
                problem = "is not a directory" if os.path.exists(folder) else "does not exist"
                raise ConfigError(f"--static {entry!r}: DIR {folder!r} {problem}")
        prefixes = [entry.partition("=")[0] for entry in self.static]
        if len(set(prefixes)) != len(prefixes):
            raise ConfigError("--static: each URL_PREFIX may be given only once")
        if self.static_max_age < 0:
            raise ConfigError("--static-max-age must be 0 (no-cache) or more")

    def _validate_http2(self) -> None:
        # Ranges from RFC 9113 §6.5.2. The window may not go below the protocol's initial
        # 65,535 because a client may send that much before our SETTINGS reach it.
        if self.h2_max_concurrent_streams < 1:
            raise ConfigError("--h2-max-concurrent-streams must be at least 1")
        if self.h2_max_header_list_size < 1 * KiB:
            raise ConfigError("--h2-max-header-list-size must be at least 1024 bytes")
        if not 65535 <= self.h2_initial_window_size <= 2**31 - 1:
            raise ConfigError("--h2-initial-window-size must be from 65535 to 2147483647")
        if not 16384 <= self.h2_max_frame_size <= 2**24 - 1:
            raise ConfigError("--h2-max-frame-size must be from 16384 to 16777215")
        if self.h2_send_timeout <= 0:
            raise ConfigError("--h2-send-timeout must be greater than 0")
        if self.h2_max_resets < 1 or self.h2_max_control_frames < 1:
            raise ConfigError("--h2-max-resets and --h2-max-control-frames must be at least 1")

    def _validate_websocket(self) -> None:
        if self.ws_max_message_size < 0:
            raise ConfigError("--ws-max-message-size must be 0 (unlimited) or more")
        if self.ws_ping_interval < 0:
            raise ConfigError("--ws-ping-interval must be 0 (no pings) or more")
        if self.ws_ping_timeout <= 0 or self.ws_close_timeout <= 0:
            raise ConfigError("--ws-ping-timeout and --ws-close-timeout must be greater than 0")

    def _validate_tls(self) -> None:
        if self.tls_min_version not in ("1.2", "1.3"):
            raise ConfigError(f"--tls-min-version {self.tls_min_version!r}: choose 1.2 or 1.3")
        if self.client_cert not in ("none", "optional", "required"):
            raise ConfigError(f"--client-cert {self.client_cert!r}: choose none, optional or required")
        if self.client_cert != "none" and not self.ca_certs:
            raise ConfigError(f"--client-cert {self.client_cert} needs --ca-certs FILE to verify client certificates")
        if self.ca_certs and self.client_cert == "none":
            raise ConfigError("--ca-certs has no effect with --client-cert none: choose optional or required")
        if self.cert_reload_interval < 0:
            raise ConfigError("--cert-reload-interval must be 0 (off) or more")
        for entry in self.sni_certs:
            host, equals, files = entry.partition("=")
            cert, comma, key = files.partition(",")
            if not (host and equals and cert and comma and key):
                raise ConfigError(f"--sni-cert {entry!r}: expected HOST=CERT,KEY, e.g. api.example.com=api.pem,api.key")
        if not self.tls and (self.sni_certs or self.ca_certs or self.ciphers):
            raise ConfigError("--sni-cert, --ca-certs and --ciphers need TLS: give --cert/--key")

    def _validate_acme(self) -> None:
        acme_only = {
            "--acme-email": self.acme_email,
            "--acme-agree-tos": self.acme_agree_tos,
            "--acme-directory": self.acme_directory,
            "--acme-staging": self.acme_staging,
            "--acme-ca-bundle": self.acme_ca_bundle,
            "--acme-eab-kid": self.acme_eab_kid,
        }
        if not self.acme_domains:
            given = [name for name, value in acme_only.items() if value]
            if given or self.acme_challenge != "auto":
                raise ConfigError(f"{', '.join(given) or '--acme-challenge'} needs --acme-domain NAME")
            return
        for entry in self.acme_domains:
            for name in entry.split(","):
                if not _DNS_NAME.match(name.strip().lower()):
                    raise ConfigError(f"--acme-domain {entry!r}: {name.strip()!r} is not a DNS name a CA can validate")
        if self.acme_staging and self.acme_directory:
            raise ConfigError("--acme-staging and --acme-directory exclude each other")
        if self.acme_directory and not self.acme_directory.startswith("https://"):
            raise ConfigError(f"--acme-directory {self.acme_directory!r}: must be an https:// URL")
        if bool(self.acme_eab_kid) != bool(self.acme_eab_hmac):
            raise ConfigError("--acme-eab-kid and --acme-eab-hmac must be given together")
        if self.acme_ca_bundle and not os.path.isfile(self.acme_ca_bundle):
            raise ConfigError(f"--acme-ca-bundle {self.acme_ca_bundle!r}: no such file")
        if self.acme_challenge not in ("auto", "tls-alpn-01", "http-01"):
            raise ConfigError(f"--acme-challenge {self.acme_challenge!r}: choose auto, tls-alpn-01 or http-01")

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
        return tuple(spec.address for spec in self.listeners if spec.redirect)

    @property
    def tls(self) -> bool:
        """True when the listeners speak TLS (a given certificate, the dev one or ACME's)."""
        return self.certfile is not None or self.dev_tls or bool(self.acme_domains)

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
