"""Config validation: every bad value is one line naming the option; the CLI exits with 2."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from gateway.config import BindAddress, Config, ConfigError
from tests.apps.process import run_gateway


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:8000", "127.0.0.1", 8000),
        ("localhost:0", "localhost", 0),
        (":8000", "0.0.0.0", 8000),
        ("[::1]:8443", "::1", 8443),
        ("[::]:65535", "::", 65535),
    ],
)
def test_bind_forms_accepted(text: str, host: str, port: int) -> None:
    assert BindAddress.parse(text) == BindAddress(host, port)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "--bind 'localhost': expected HOST:PORT, e.g. 127.0.0.1:8000"),
        ("127.0.0.1:", "--bind '127.0.0.1:': port must be a number from 0 to 65535"),
        ("127.0.0.1:http", "--bind '127.0.0.1:http': port must be a number from 0 to 65535"),
        ("127.0.0.1:65536", "--bind '127.0.0.1:65536': port must be a number from 0 to 65535"),
        ("127.0.0.1:-1", "--bind '127.0.0.1:-1': port must be a number from 0 to 65535"),
        ("::1:8000", "--bind '::1:8000': write IPv6 addresses in brackets, [::1]:8443"),
        ("[::1]", "--bind '[::1]': expected [IPv6]:PORT, e.g. [::1]:8443"),
        ("[::1:8000", "--bind '[::1:8000': expected [IPv6]:PORT, e.g. [::1]:8443"),
        ("[localhost]:80", "--bind '[localhost]:80': 'localhost' is not an IPv6 address"),
    ],
)
def test_bad_bind_forms(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(bind=(text,))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"certfile": "cert.pem"}, "--cert and --key must be given together"),
        ({"keyfile": "key.pem"}, "--cert and --key must be given together"),
        ({"max_body_size": -1}, "--max-body-size must be 0 (unlimited) or more"),
        ({"max_header_size": -1}, "--max-header-size must be at least 1024 bytes"),
        ({"max_header_size": 1023}, "--max-header-size must be at least 1024 bytes"),
        ({"backlog": 0}, "--backlog must be at least 1"),
        ({"keep_alive_timeout": 0}, "--keep-alive-timeout must be greater than 0"),
        ({"header_timeout": -1.0}, "--header-timeout must be greater than 0"),
        ({"tls_handshake_timeout": 0}, "--tls-handshake-timeout must be greater than 0"),
        ({"graceful_timeout": -0.5}, "--graceful-timeout must be 0 or more"),
        ({"root_path": "api"}, "--root-path 'api': must start with '/' and not end with '/'"),
        ({"root_path": "/api/"}, "--root-path '/api/': must start with '/' and not end with '/'"),
        ({"lifespan": "sometimes"}, "--lifespan 'sometimes': choose auto, on or off"),
        ({"log_level": "loud"}, "--log-level 'loud': unknown level"),
        ({"port": 70000}, "--port 70000: must be a number from 0 to 65535"),
        ({"port": -1}, "--port -1: must be a number from 0 to 65535"),
        ({"host": "[::1"}, "--host '[::1': not a host name or IP address"),
    ],
)
def test_bad_values_name_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(**options)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_valid_values_and_bind_precedence() -> None:
    config = Config(host="::1", port=8443, root_path="/api", max_body_size=0, graceful_timeout=0)
    assert config.addresses == (BindAddress("::1", 8443),)
    assert config.addresses[0].url_host() == "[::1]"
    assert Config(host="[::1]", port=1).addresses == (BindAddress("::1", 1),)
    assert Config(bind=("127.0.0.1:2",), port=-5).addresses == (BindAddress("127.0.0.1", 2),)
    both = Config(bind=("127.0.0.1:1", "[::1]:2"), host="10.0.0.1", port=3)
    assert both.addresses == (BindAddress("127.0.0.1", 1), BindAddress("::1", 2))


def test_replace_validates_again() -> None:
    config = Config()
    assert config.replace(backlog=5).backlog == 5
    with pytest.raises(ConfigError, match="--backlog must be at least 1"):
        config.replace(backlog=0)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--bind", "nowhere"), "asgigw: error: --bind 'nowhere': expected HOST:PORT, e.g. 127.0.0.1:8000"),
        (("--max-body-size", "-1"), "asgigw: error: --max-body-size must be 0 (unlimited) or more"),
        (("--root-path", "api/"), "asgigw: error: --root-path 'api/': must start with '/' and not end with '/'"),
        (("--cert", "cert.pem"), "asgigw: error: --cert and --key must be given together"),
    ],
)
def test_cli_config_error_exits_2_with_one_line(args: tuple[str, ...], line: str) -> None:
    plain = "--cert" not in args
    result = run_gateway(*args, "tests.apps.basic:app", plain=plain)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]


def test_cli_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_gateway("--port", str(port), "--lifespan", "off", "tests.apps.basic:app")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr
