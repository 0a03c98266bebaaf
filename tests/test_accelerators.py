"""The fast extra: --loop and --http1-parser, their start-up line, errors and fallbacks.

The HTTP/1.1 behaviour with each parser is covered by the HTTP/1.1 test modules, which run
with both (tests/conftest.py ``http1_parser``); here: choosing, reporting and falling back.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl

import httpx
import pytest
from click.testing import CliRunner

from gateway import accelerators, config, config_checks, platform
from gateway.cli import main
from gateway.config import Config, ConfigError, installed
from tests.apps.process import gateway_process, run_gateway
from tests.conftest import CertFiles

needs_uvloop = pytest.mark.skipif(
    not installed("uvloop"), reason="uvloop is not installed (pip install 'asgigw[fast]')"
)
needs_httptools = pytest.mark.skipif(
    not installed("httptools"), reason="httptools is not installed (pip install 'asgigw[fast]')"
)


def _pretend_missing(monkeypatch: pytest.MonkeyPatch, *missing: str) -> None:
    real = config.installed
    fake = lambda module: module not in missing and real(module)  # noqa: E731
    monkeypatch.setattr(config, "installed", fake)
    monkeypatch.setattr(config_checks, "installed", fake)
    monkeypatch.setattr(accelerators, "installed", fake)
    monkeypatch.setattr(platform, "installed", fake)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loop": "tokio"}, "--loop 'tokio': choose auto, asyncio or uvloop"),
        ({"http1_parser": "picohttp"}, "--http1-parser 'picohttp': choose auto, h11 or httptools"),
    ],
)
def test_unknown_choices_are_config_errors(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**options)  # type: ignore[arg-type]


def test_asking_for_a_missing_accelerator_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_missing(monkeypatch, "httptools", "uvloop", "winloop")
    with pytest.raises(ConfigError, match=r"httptools is not installed \(pip install 'asgigw\[fast\]'\)"):
        Config(http1_parser="httptools")
    for argv in (["--loop", "uvloop"], ["--http1-parser", "httptools"]):
        result = CliRunner().invoke(main, ["--no-tls", *argv, "tests.apps.pid:app"])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"asgigw: error: {argv[0]} ")
        assert "is not installed (pip install 'asgigw[fast]')" in lines[0]


def test_auto_falls_back_to_the_pure_python_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_missing(monkeypatch, "httptools", "uvloop", "winloop")
    monkeypatch.setattr(importlib, "import_module", _no_module)
    assert accelerators.http1_parser_in_use("auto") == "h11"
    loop = platform.new_event_loop(Config().loop)
    try:
        assert platform.describe_loop(loop) == "asyncio"
    finally:
        loop.close()


def _no_module(name: str) -> object:
    raise ImportError(f"No module named {name!r}")


def test_a_libuv_loop_that_cannot_start_falls_back_with_an_info_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What winloop does under Wine when it is installed but cannot run.
    monkeypatch.setattr(platform, "installed", lambda module: True)
    monkeypatch.setattr(importlib, "import_module", _broken_loop_module)
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.INFO, logger="gateway")
    for windows, module in ((True, "winloop"), (False, "uvloop")):
        loop = platform.new_event_loop("auto", windows=windows)
        try:
            assert isinstance(loop, asyncio.AbstractEventLoop) and platform.describe_loop(loop) == "asyncio"
        finally:
            loop.close()
        assert f"{module} is installed but cannot start (no IOCP here); using the asyncio loop" in caplog.text
        with pytest.raises(ConfigError, match=f"--loop uvloop: {module} cannot start: OSError: no IOCP here"):
            platform.new_event_loop("uvloop", windows=windows)


def _broken_loop_module(name: str) -> object:
    class Broken:
        @staticmethod
        def new_event_loop() -> asyncio.AbstractEventLoop:
            raise OSError("no IOCP here")

    return Broken


def test_help_lists_both_options() -> None:
    result = run_gateway("--help")
    assert "--loop [auto|asyncio|uvloop]" in result.stdout
    assert "--http1-parser [auto|h11|httptools]" in result.stdout


@pytest.mark.parametrize(
    ("loop", "parser"),
    [
        ("asyncio", "h11"),
        pytest.param("uvloop", "httptools", marks=[needs_uvloop, needs_httptools]),
    ],
)
def test_serving_says_which_loop_and_parser(loop: str, parser: str) -> None:
    with gateway_process("--port", "0", "--loop", loop, "--http1-parser", parser, "tests.apps.pid:app") as server:
        assert f"{loop} loop, {parser} parser" in server.stderr
        for _ in range(3):
            assert httpx.get(server.url, timeout=10).status_code == 200


@needs_uvloop
@needs_httptools
def test_auto_takes_the_fast_backends_over_tls(cert_files: CertFiles) -> None:
    args = ("--port", "0", "--cert", str(cert_files.cert), "--key", str(cert_files.key), "tests.apps.pid:app")
    with gateway_process(*args, plain=False) as server:
        assert "uvloop loop, httptools parser" in server.stderr
        # Own contexts: httpx sets ALPN on the one it is given, and the session's shared
        # client_context must keep offering HTTP/1.1 only (WebSocket tests use it).
        with httpx.Client(verify=ssl.create_default_context(cafile=cert_files.ca), http2=True) as client:
            assert client.get(server.url, timeout=10).http_version == "HTTP/2"
        with httpx.Client(verify=ssl.create_default_context(cafile=cert_files.ca)) as client:
            for _ in range(3):
                assert client.get(server.url, timeout=10).status_code == 200


@pytest.mark.slow
@needs_uvloop
def test_each_worker_builds_a_uvloop() -> None:
    with gateway_process("--port", "0", "--workers", "2", "--loop", "uvloop", "tests.apps.pid:app") as server:
        assert "uvloop loop" in server.stderr and "2 worker processes" in server.stderr
        answered = set()
        for _ in range(20):
            answered.add(httpx.get(server.url, timeout=10).json()["pid"])
        assert answered


@needs_httptools
def test_the_fast_extra_without_its_loop_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A platform where httptools installs but the libuv loop has no wheel.
    _pretend_missing(monkeypatch, "uvloop", "winloop")
    monkeypatch.setattr(importlib, "import_module", _no_module)
    monkeypatch.setattr(logging.getLogger("gateway"), "propagate", True)
    caplog.set_level(logging.INFO, logger="gateway")
    loop = platform.new_event_loop("auto", windows=True)
    loop.close()
    assert "winloop is not installed; using the asyncio loop" in caplog.text
