"""--access-log-file FILE, SIGUSR1 reopening (logrotate), --log-config, through the command line."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway import platform
from gateway.config import Config, ConfigError
from gateway.logs import LoggingSetupError, apply_log_config
from tests.apps.process import gateway_process, run_gateway

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGUSR1 is POSIX-only (docs/logging.md)")


def wait_for_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    """Poll (bounded) until ``path`` holds ``count`` lines; its lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text("utf-8").splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} has fewer than {count} lines: {lines}")


def get(url: str, path: str) -> None:
    with httpx.Client(timeout=5) as client:  # a new connection each time: any worker may answer
        assert client.get(url + path).status_code == 200


@posix_only
def test_sigusr1_reopens_the_access_log_after_a_rename(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    arguments = ("--port", "0", "--access-log-file", str(log_file), "--access-log-format", "common")
    with gateway_process(*arguments, "tests.apps.basic:app") as server:
        get(server.url, "/before")
        wait_for_lines(log_file, 1)
        log_file.rename(tmp_path / "access.log.1")  # what logrotate does
        get(server.url, "/renamed")  # still written to the renamed file: same handle
        wait_for_lines(tmp_path / "access.log.1", 2)
        server.send_signal(signal.SIGUSR1)
        server.wait_for(r"SIGUSR1: reopened 1 log file")
        get(server.url, "/after")
        new_lines = wait_for_lines(log_file, 1)
    old_lines = (tmp_path / "access.log.1").read_text("utf-8").splitlines()
    assert ['"GET /before ' in old_lines[0], '"GET /renamed ' in old_lines[1]] == [True, True], old_lines
    assert len(new_lines) == 1 and '"GET /after HTTP/1.1" 200 ' in new_lines[0], new_lines
    # common format: bare lines, no "[INFO]" prefix
    assert new_lines[0].startswith("127.0.0.1 - - [")
    assert '"GET /' not in server.stderr  # nothing on stderr


@posix_only
@pytest.mark.slow
def test_workers_reopen_when_the_supervisor_gets_sigusr1(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    template = "{pid} {path}"
    arguments = ("--port", "0", "--workers", "2", "--access-log-file", str(log_file), "--access-log-format", template)
    with gateway_process(*arguments, "tests.apps.basic:app") as server:
        get(server.url, "/before")
        wait_for_lines(log_file, 1)
        log_file.rename(tmp_path / "access.log.1")
        server.send_signal(signal.SIGUSR1)  # to the supervisor only
        for _ in range(2):  # each worker says so once its file is new
            server.wait_for(r"\[worker \d+\] SIGUSR1, passed on by the supervisor: reopened 1 log file")
        # Every request after the signal lands in the new file, whichever worker answers.
        for index in range(12):
            get(server.url, f"/after-{index}")
        lines = wait_for_lines(log_file, 12)
    assert sorted(line.split(" ")[1] for line in lines) == sorted(f"/after-{index}" for index in range(12))
    assert all(not line.endswith("/before") for line in lines)


def test_log_config_json_routes_the_access_logger(tmp_path: Path) -> None:
    log_file = tmp_path / "from-config.log"
    settings = {
        "formatters": {"tagged": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "tagged"}},
        "loggers": {"gateway.access": {"handlers": ["file"], "propagate": False}},
    }
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(settings))
    with gateway_process("--port", "0", "--log-config", str(config_file), "tests.apps.basic:app") as server:
        get(server.url, "/configured")
        lines = wait_for_lines(log_file, 1)
        assert "asgigw serving" in server.stderr  # gateway.error kept working (not disabled)
    assert lines[0].startswith("ACCESS 127.0.0.1:") and '"GET /configured HTTP/1.1" 200' in lines[0]
    assert "/configured" not in server.stderr


def test_log_config_toml(tmp_path: Path) -> None:
    log_file = tmp_path / "toml.log"
    config_file = tmp_path / "logging.toml"
    config_file.write_text(
        "[formatters.bare]\nformat = 'T %(message)s'\n"
        f"[handlers.file]\nclass = 'logging.FileHandler'\nfilename = {json.dumps(str(log_file))}\nformatter = 'bare'\n"
        "[loggers.'gateway.access']\nhandlers = ['file']\npropagate = false\n"
    )
    arguments = ("--port", "0", "--log-config", str(config_file), "--access-log-format", "{method} {path}")
    with gateway_process(*arguments, "tests.apps.basic:app") as server:
        get(server.url, "/toml")
        assert wait_for_lines(log_file, 1) == ["T GET /toml"]


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML is not installed")
def test_log_config_yaml(tmp_path: Path) -> None:
    log_file = tmp_path / "yaml.log"
    config_file = tmp_path / "logging.yaml"
    config_file.write_text(
        "formatters:\n  bare:\n    format: 'Y %(message)s'\n"
        f"handlers:\n  file:\n    class: logging.FileHandler\n    filename: {json.dumps(str(log_file))}\n"
        "    formatter: bare\n"
        "loggers:\n  gateway.access:\n    handlers: [file]\n    propagate: false\n"
    )
    arguments = ("--port", "0", "--log-config", str(config_file), "--access-log-format", "{status}")
    with gateway_process(*arguments, "tests.apps.basic:app") as server:
        get(server.url, "/yaml")
        assert wait_for_lines(log_file, 1) == ["Y 200"]


def test_yaml_without_pyyaml_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "logging.yaml"
    config_file.write_text("version: 1\n")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "yaml" else real_find_spec(name))
    with pytest.raises(ConfigError, match=r"--log-config .*YAML needs PyYAML"):
        Config(log_config=str(config_file))
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    with pytest.raises(LoggingSetupError, match="YAML needs PyYAML"):
        apply_log_config(str(config_file))


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.json", "{not json", "--log-config"),
        ("bad.toml", "handlers = [", "--log-config"),
        ("unknown.json", '{"handlers": {"h": {"class": "no.such.Handler"}}}', "--log-config"),
        ("list.json", "[1, 2]", "expected a mapping at the top level"),
    ],
)
def test_bad_log_config_stops_start_up_with_one_line(tmp_path: Path, name: str, content: str, problem: str) -> None:
    config_file = tmp_path / name
    config_file.write_text(content)
    result = run_gateway("--port", "0", "--log-config", str(config_file), "tests.apps.basic:app")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("asgigw: error: "), result.stderr
    assert problem in result.stderr


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"access_log_file": "/no/such/dir/access.log"}, "--access-log-file '/no/such/dir/access.log'"),
        ({"log_config": "logging.ini"}, "expected a .json, .toml, .yaml or .yml file"),
        ({"log_config": "/no/such/logging.json"}, "no such file"),
    ],
)
def test_logging_options_are_validated(options: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        Config(**options)  # type: ignore[arg-type]


def test_no_access_log_and_a_file_exclude_each_other(tmp_path: Path) -> None:
    result = run_gateway("--no-access-log", "--access-log-file", str(tmp_path / "a.log"), "tests.apps.basic:app")
    assert result.returncode == 2
    assert "--access-log-file has no effect with --no-access-log" in result.stderr


def test_config_file_and_environment_set_the_logging_options(tmp_path: Path) -> None:
    log_file = tmp_path / "from-env.log"
    config_file = tmp_path / "asgigw.toml"
    config_file.write_text('access-log-format = "{method} {path} {status}"\n')
    arguments = ("--port", "0", "--config", str(config_file), "tests.apps.basic:app")
    with gateway_process(*arguments, ASGIGW_ACCESS_LOG_FILE=str(log_file)) as server:
        get(server.url, "/sources")
        assert wait_for_lines(log_file, 1) == ["GET /sources 200"]


def test_reopen_signal_is_not_installed_on_windows() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        calls: list[int] = []
        undo = platform.install_reopen_signal(loop, lambda: calls.append(1), windows=True)
        undo()
        assert calls == []
        if hasattr(signal, "SIGUSR1"):
            assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    finally:
        loop.close()
