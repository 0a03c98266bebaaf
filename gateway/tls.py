"""TLS: every ``ssl.SSLContext`` the server uses is built here.

Settings follow current edge-server practice: TLS 1.2 at least, the server's cipher order,
no TLS compression (CRIME), no renegotiation, ALPN to choose the HTTP version.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence

from gateway.config import Config, ConfigError


class TLSConfigError(ConfigError):
    """A certificate or key cannot be used; the message says which file and why."""


def _check_readable(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise TLSConfigError(f"{what} file not found: {path}")
    if not os.path.isfile(path):
        raise TLSConfigError(f"{what} path is not a file: {path}")
    if not os.access(path, os.R_OK):
        raise TLSConfigError(f"{what} file is not readable: {path}")


def create_server_context(config: Config, alpn_protocols: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
    """A server context for ``config.certfile``/``config.keyfile``; raises TLSConfigError."""
    assert config.certfile is not None and config.keyfile is not None
    certfile, keyfile = config.certfile, config.keyfile
    _check_readable(certfile, "certificate")
    _check_readable(keyfile, "key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    password = config.key_password

    def give_password() -> str:
        # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
        if password is None:
            raise TLSConfigError(f"key {keyfile} is encrypted: give --key-password")
        return password

    try:
        context.load_cert_chain(certfile, keyfile, give_password)
    except TLSConfigError:
        raise
    except ssl.SSLError as exc:
        raise TLSConfigError(_explain(exc, certfile, keyfile, password)) from None
    context.set_alpn_protocols(list(alpn_protocols))
    return context


def _explain(exc: ssl.SSLError, certfile: str, keyfile: str, password: str | None) -> str:
    text = f"{exc.reason or ''} {exc}".upper()
    if "KEY_VALUES_MISMATCH" in text or "KEY VALUES MISMATCH" in text:
        return f"key {keyfile} does not match certificate {certfile}"
    if password is not None and ("BAD_DECRYPT" in text or "BAD DECRYPT" in text or "PASSWORD" in text):
        return f"wrong --key-password for key {keyfile}"
    if "PEM" in text or "NO_START_LINE" in text or "ASN1" in text:
        return f"cannot read {certfile} / {keyfile} as PEM certificate and key ({exc.reason})"
    return f"cannot load certificate {certfile} with key {keyfile}: {exc.reason or exc}"
