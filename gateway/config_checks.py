"""The checks ``Config`` runs on itself when it is created, one function per group of
options; each raises :class:`~gateway.config_values.ConfigError` naming the option.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from typing import TYPE_CHECKING

from gateway.config_values import (
    _DNS_NAME,
    ACCESS_LOG_PRESETS,
    LOG_CONFIG_SUFFIXES,
    UVLOOP_MODULE,
    BindAddress,
    ConfigError,
    KiB,
    installed,
    parse_log_template,
    parse_rate,
)
from gateway.response_options import check_response_options

if TYPE_CHECKING:
    from gateway.config import Config


def check_accelerators(config: Config) -> None:
    if config.loop not in ("auto", "asyncio", "uvloop"):
        raise ConfigError(f"--loop {config.loop!r}: choose auto, asyncio or uvloop")
    if config.http1_parser not in ("auto", "h11", "httptools"):
        raise ConfigError(f"--http1-parser {config.http1_parser!r}: choose auto, h11 or httptools")
    # Asked for by name, the module must be there; "auto" falls back instead.
    if config.loop == "uvloop" and not installed(UVLOOP_MODULE):
        raise ConfigError(f"--loop uvloop: {UVLOOP_MODULE} is not installed (pip install 'asgigw[fast]')")
    if config.http1_parser == "httptools" and not installed("httptools"):
        raise ConfigError("--http1-parser httptools: httptools is not installed (pip install 'asgigw[fast]')")


def check_logging(config: Config) -> None:
    if config.access_log_format not in ACCESS_LOG_PRESETS:
        parse_log_template(config.access_log_format)
    if config.access_log_file is not None:
        if not config.access_log:
            raise ConfigError("--access-log-file has no effect with --no-access-log")
        folder = os.path.dirname(os.path.abspath(config.access_log_file))
        if os.path.isdir(config.access_log_file) or not os.path.isdir(folder):
            raise ConfigError(f"--access-log-file {config.access_log_file!r}: not a file in an existing directory")
    if config.log_config is not None:
        suffix = os.path.splitext(config.log_config)[1].lower()
        if suffix not in LOG_CONFIG_SUFFIXES:
            raise ConfigError(f"--log-config {config.log_config!r}: expected a .json, .toml, .yaml or .yml file")
        if not os.path.isfile(config.log_config):
            raise ConfigError(f"--log-config {config.log_config!r}: no such file")
        if suffix in (".yaml", ".yml") and importlib.util.find_spec("yaml") is None:
            raise ConfigError(
                f"--log-config {config.log_config!r}: YAML needs PyYAML (pip install pyyaml); or use JSON/TOML"
            )


def check_limits(config: Config) -> None:
    for name in ("limit_concurrency", "max_connections", "max_connections_per_ip"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 (off) or more")
    if config.rate_limit_burst < 0:
        raise ConfigError("--rate-limit-burst must be 0 (N of --rate-limit) or more")
    if config.rate_limit_table_size < 1:
        raise ConfigError("--rate-limit-table-size must be at least 1")
    if config.rate_limit:
        parse_rate(config.rate_limit)
    elif config.rate_limit_burst:
        raise ConfigError("--rate-limit-burst needs --rate-limit N/s or N/m")


def check_response(config: Config) -> None:
    try:
        check_response_options(
            config.hsts,
            config.hsts_include_subdomains,
            config.hsts_preload,
            config.response_headers,
            config.compress_types,
            config.compress_min_size,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_edge(config: Config) -> None:
    for path in config.uds:
        if sys.platform == "win32":
            raise ConfigError(f"--uds {path}: Unix domain sockets are not served on Windows (use --bind)")
        if not path or len(path.encode()) > 100:
            raise ConfigError(f"--uds {path!r}: a socket path must have 1 to 100 bytes")
    if config.uds_mode is not None and not 0 <= config.uds_mode <= 0o777:
        raise ConfigError(f"--uds-mode {config.uds_mode:o}: expected an octal file mode such as 660")
    for fd in config.fds:
        if fd < 0:
            raise ConfigError(f"--fd {fd}: a file descriptor is 0 or more")
    for text in config.forwarded_allow_ips:
        if text.strip() != "*":
            try:
                ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise ConfigError(
                    f"--forwarded-allow-ips {text!r}: not an IP address, a network (10.0.0.0/8) or *"
                ) from None
    if config.forwarded_host and not config.proxy_headers:
        raise ConfigError("--forwarded-host needs --proxy-headers")
    for text in config.proxy_protocol_bind:
        BindAddress.parse(text, "--proxy-protocol-bind")
    for text in config.redirect_http:
        BindAddress.parse(text, "--redirect-http")
    if config.redirect_http and not config.tls:
        raise ConfigError("--redirect-http redirects to the HTTPS listener: it needs TLS (drop --no-tls)")


def check_recycling(config: Config) -> None:
    if config.max_requests < 0 or config.max_requests_jitter < 0:
        raise ConfigError("--max-requests and --max-requests-jitter must be 0 or more")
    if config.max_requests_jitter and not config.max_requests:
        raise ConfigError("--max-requests-jitter needs --max-requests N")
    if not config.reload and (config.reload_dirs or config.reload_includes or config.reload_excludes):
        raise ConfigError("--reload-dir, --reload-include and --reload-exclude need --reload")
    for folder in config.reload_dirs:
        if not os.path.isdir(folder):
            raise ConfigError(f"--reload-dir {folder!r}: not a directory")


def check_static(config: Config) -> None:
    for entry in config.static:
        prefix, equals, folder = entry.partition("=")
        if not equals or not folder:
            raise ConfigError(f"--static {entry!r}: expected URL_PREFIX=DIR, e.g. /static/=staticfiles")
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ConfigError(f"--static {entry!r}: URL_PREFIX must start and end with '/', e.g. /static/")
        if not os.path.isdir(folder):
            problem = "is not a directory" if os.path.exists(folder) else "does not exist"
            raise ConfigError(f"--static {entry!r}: DIR {folder!r} {problem}")
    prefixes = [entry.partition("=")[0] for entry in config.static]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError("--static: each URL_PREFIX may be given only once")
    if config.static_max_age < 0:
        raise ConfigError("--static-max-age must be 0 (no-cache) or more")


def check_http2(config: Config) -> None:
    # Ranges from RFC 9113 §6.5.2. The window may not go below the protocol's initial
    # 65,535 because a client may send that much before our SETTINGS reach it.
    if config.h2_max_concurrent_streams < 1:
        raise ConfigError("--h2-max-concurrent-streams must be at least 1")
    if config.h2_max_header_list_size < 1 * KiB:
        raise ConfigError("--h2-max-header-list-size must be at least 1024 bytes")
    if not 65535 <= config.h2_initial_window_size <= 2**31 - 1:
        raise ConfigError("--h2-initial-window-size must be from 65535 to 2147483647")
    if not 16384 <= config.h2_max_frame_size <= 2**24 - 1:
        raise ConfigError("--h2-max-frame-size must be from 16384 to 16777215")
    if config.h2_send_timeout <= 0:
        raise ConfigError("--h2-send-timeout must be greater than 0")
    if config.h2_max_resets < 1 or config.h2_max_control_frames < 1:
        raise ConfigError("--h2-max-resets and --h2-max-control-frames must be at least 1")


def check_websocket(config: Config) -> None:
    if config.ws_max_message_size < 0:
        raise ConfigError("--ws-max-message-size must be 0 (unlimited) or more")
    if config.ws_ping_interval < 0:
        raise ConfigError("--ws-ping-interval must be 0 (no pings) or more")
    if config.ws_ping_timeout <= 0 or config.ws_close_timeout <= 0:
        raise ConfigError("--ws-ping-timeout and --ws-close-timeout must be greater than 0")


def check_tls(config: Config) -> None:
    if config.tls_min_version not in ("1.2", "1.3"):
        raise ConfigError(f"--tls-min-version {config.tls_min_version!r}: choose 1.2 or 1.3")
    if config.client_cert not in ("none", "optional", "required"):
        raise ConfigError(f"--client-cert {config.client_cert!r}: choose none, optional or required")
    if config.client_cert != "none" and not config.ca_certs:
        raise ConfigError(f"--client-cert {config.client_cert} needs --ca-certs FILE to verify client certificates")
    if config.ca_certs and config.client_cert == "none":
        raise ConfigError("--ca-certs has no effect with --client-cert none: choose optional or required")
    if config.cert_reload_interval < 0:
        raise ConfigError("--cert-reload-interval must be 0 (off) or more")
    for entry in config.sni_certs:
        host, equals, files = entry.partition("=")
        cert, comma, key = files.partition(",")
        if not (host and equals and cert and comma and key):
            raise ConfigError(f"--sni-cert {entry!r}: expected HOST=CERT,KEY, e.g. api.example.com=api.pem,api.key")
    if not config.tls and (config.sni_certs or config.ca_certs or config.ciphers):
        raise ConfigError("--sni-cert, --ca-certs and --ciphers need TLS: give --cert/--key")


def check_acme(config: Config) -> None:
    acme_only = {
        "--acme-email": config.acme_email,
        "--acme-agree-tos": config.acme_agree_tos,
        "--acme-directory": config.acme_directory,
        "--acme-staging": config.acme_staging,
        "--acme-ca-bundle": config.acme_ca_bundle,
        "--acme-eab-kid": config.acme_eab_kid,
    }
    if not config.acme_domains:
        given = [name for name, value in acme_only.items() if value]
        if given or config.acme_challenge != "auto":
            raise ConfigError(f"{', '.join(given) or '--acme-challenge'} needs --acme-domain NAME")
        return
    for entry in config.acme_domains:
        for name in entry.split(","):
            if not _DNS_NAME.match(name.strip().lower()):
                raise ConfigError(f"--acme-domain {entry!r}: {name.strip()!r} is not a DNS name a CA can validate")
    if config.acme_staging and config.acme_directory:
        raise ConfigError("--acme-staging and --acme-directory exclude each other")
    if config.acme_directory and not config.acme_directory.startswith("https://"):
        raise ConfigError(f"--acme-directory {config.acme_directory!r}: must be an https:// URL")
    if bool(config.acme_eab_kid) != bool(config.acme_eab_hmac):
        raise ConfigError("--acme-eab-kid and --acme-eab-hmac must be given together")
    if config.acme_ca_bundle and not os.path.isfile(config.acme_ca_bundle):
        raise ConfigError(f"--acme-ca-bundle {config.acme_ca_bundle!r}: no such file")
    if config.acme_challenge not in ("auto", "tls-alpn-01", "http-01"):
        raise ConfigError(f"--acme-challenge {config.acme_challenge!r}: choose auto, tls-alpn-01 or http-01")
