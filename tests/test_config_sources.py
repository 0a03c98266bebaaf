"""Options from a TOML config file, ASGIGW_* variables and --env-file, their precedence,
``--print-config``, ``--version``, and the one-line form of every start-up error."""

from __future__ import annotations

import json
import socket
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.apps.process import ROOT, free_port, gateway_process, run_gateway

SOURCE_COMMENT = "  # "


def effective(text: str) -> dict[str, tuple[str, str]]:
    """``--print-config`` output as {key: (value text, source)} for the lines that are set."""
    lines = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        setting, _, source = line.partition(SOURCE_COMMENT)
        key, _, value = setting.partition(" = ")
        lines[key] = (value, source)
    return lines


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``asgigw: error:`` line of a failed start (exit code 2)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asgigw: error: "), lines[0]
    return lines[0]


# -- a config file serving for real ---------------------------------------------------------


def test_config_file_configures_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "hello.txt").write_text("from a static folder\n")
    config = tmp_path / "asgigw.toml"
    config.write_text(
        f'app = "tests.apps.basic:app"\n'
        f'bind = ["127.0.0.1:{port}"]\n'
        f"no-tls = true\n"
        f"access-log = false\n"
        f"keep-alive-timeout = 2\n"
        f'static = {{"/files/" = "{(tmp_path / "files").as_posix()}"}}\n'
    )
    with gateway_process("--config", str(config), plain=False) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{server.url}/files/hello.txt").text == "from a static folder\n"
        assert httpx.get(f"{server.url}/hello").status_code == 200
    assert '"GET /hello' not in server.stderr  # access-log = false took effect


def test_pyproject_tool_table_is_read_from_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\n\n[tool.asgigw]\nport = 8123\nworkers = 3\n')
    shown = effective(run_gateway("--print-config", "x:y", cwd=tmp_path).stdout)
    assert shown["port"] == ("8123", f"{tmp_path / 'pyproject.toml'} [tool.asgigw]")
    assert shown["workers"][0] == "3"
    # An explicit --config replaces the pyproject table entirely.
    other = tmp_path / "other.toml"
    other.write_text("backlog = 64\n")
    shown = effective(run_gateway("--print-config", "--config", str(other), "x:y", cwd=tmp_path).stdout)
    assert shown["port"] == ("8000", "default")
    assert shown["backlog"] == ("64", str(other))


def test_pyproject_without_the_table_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\n')
    shown = effective(run_gateway("--print-config", "x:y", cwd=tmp_path).stdout)
    assert shown["port"] == ("8000", "default")


# -- precedence: command line > environment > config file > defaults ------------------------


def test_precedence_of_the_four_sources(tmp_path: Path) -> None:
    config = tmp_path / "asgigw.toml"
    config.write_text("port = 1111\nbacklog = 99\nheader-timeout = 3.5\n")
    text = run_gateway(
        "--print-config", "--config", str(config), "--port", "3333", "x:y", ASGIGW_PORT="2222", ASGIGW_BACKLOG="77"
    ).stdout
    shown = effective(text)
    assert shown["port"] == ("3333", "command line")
    assert shown["backlog"] == ("77", "environment (ASGIGW_BACKLOG)")
    assert shown["header-timeout"] == ("3.5", str(config))
    assert shown["graceful-timeout"] == ("30.0", "default")
    assert shown["app"] == ('"x:y"', "command line")


def test_env_file_sets_options_but_the_real_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "asgigw.env"
    env_file.write_text(
        "# deployment settings\nexport ASGIGW_PORT=4444\nASGIGW_ROOT_PATH='/api'\nASGIGW_BACKLOG=10 # short\n"
    )
    shown = effective(run_gateway("--print-config", "--env-file", str(env_file), "x:y", ASGIGW_BACKLOG="20").stdout)
    assert shown["port"] == ("4444", "env file (ASGIGW_PORT)")
    assert shown["root-path"] == ('"/api"', "env file (ASGIGW_ROOT_PATH)")
    assert shown["backlog"] == ("20", "environment (ASGIGW_BACKLOG)")


def test_app_from_the_environment_and_repeatable_options_split_on_spaces() -> None:
    text = run_gateway("--print-config", ASGIGW_APP="proj.asgi:application", ASGIGW_BIND="127.0.0.1:1 [::1]:2").stdout
    shown = effective(text)
    assert shown["app"] == ('"proj.asgi:application"', "environment (ASGIGW_APP)")
    assert json.loads(shown["bind"][0]) == ["127.0.0.1:1", "[::1]:2"]


def test_print_config_masks_secrets_and_is_itself_a_config_file(tmp_path: Path) -> None:
    text = run_gateway("--print-config", "--port", "5555", "x:y", ASGIGW_KEY_PASSWORD="hunter2").stdout
    assert "hunter2" not in text
    assert effective(text)["key-password"] == ('"********"', "environment (ASGIGW_KEY_PASSWORD)")
    # Without the masked secret, the printed configuration reads back as the same settings.
    saved = tmp_path / "saved.toml"
    saved.write_text("\n".join(line for line in text.splitlines() if not line.startswith("key-password")))
    assert tomllib.loads(saved.read_text())["port"] == 5555
    again = effective(run_gateway("--print-config", "--config", str(saved)).stdout)
    assert {key: value for key, (value, _) in again.items()} == {
        key: value for key, (value, _) in effective(text).items() if key != "key-password"
    }
    assert again["port"] == ("5555", str(saved))


# -- errors: one line naming the file, the key and what was expected ------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot = 80\n", "unknown key 'prot' (keys are asgigw's long option names)"),
        ('port = "eighty"\n', "key 'port': expected an integer, got a string ('eighty')"),
        ("keep-alive-timeout = true\n", "key 'keep-alive-timeout': expected a number, got a boolean (True)"),
        ('bind = ["127.0.0.1:1", 2]\n', "key 'bind': expected a string, got an integer (2)"),
        ('lifespan = "sometimes"\n', 'key \'lifespan\': expected one of "auto", "on", "off"'),
        ("access-log = 1\n", "key 'access-log': expected true or false, got an integer (1)"),
        ("app = 3\n", "key 'app': expected a string"),
        ("config = 'x.toml'\n", "unknown key 'config'"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_config_file_mistakes_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    line = one_error_line(run_gateway("--config", str(config), "tests.apps.basic:app"))
    assert f"asgigw: error: {config}: " in line
    assert message in line


def test_config_file_bad_value_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("port = 70000\n")
    line = one_error_line(run_gateway("--config", str(config), "tests.apps.basic:app"))
    assert line.startswith(f"asgigw: error: {config}: --port")


def test_missing_config_and_env_files(tmp_path: Path) -> None:
    line = one_error_line(run_gateway("--config", str(tmp_path / "none.toml"), "tests.apps.basic:app"))
    assert f"--config {tmp_path / 'none.toml'}: No such file or directory" in line
    line = one_error_line(run_gateway("--env-file", str(tmp_path / "none.env"), "tests.apps.basic:app"))
    assert f"--env-file {tmp_path / 'none.env'}: No such file or directory" in line


def test_env_file_bad_line(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("ASGIGW_PORT=1\nthis is not an assignment\n")
    line = one_error_line(run_gateway("--env-file", str(env_file), "tests.apps.basic:app"))
    assert f"{env_file}:2: expected NAME=VALUE" in line


def test_bad_environment_value_is_one_line() -> None:
    line = one_error_line(run_gateway("tests.apps.basic:app", ASGIGW_PORT="eighty"))
    assert "'eighty' is not a valid integer" in line
    assert "ASGIGW_PORT" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus", "tests.apps.basic:app"), "No such option '--bogus'"),
        (("--port", "abc", "tests.apps.basic:app"), "'abc' is not a valid integer"),
        ((), "missing APP, the application to serve"),
        (("--workers", "0", "tests.apps.basic:app"), "--workers"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    assert message in one_error_line(run_gateway(*args))


def test_bind_error_is_the_same_one_line_form() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # The app gets as far as its lifespan startup (and prints so) before the bind fails.
        result = run_gateway("--lifespan", "off", "--port", str(port), "tests.apps.basic:app")
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(result)


def test_flags_that_exit_are_not_read_from_the_environment() -> None:
    # A container may well set ASGIGW_VERSION for its own purposes; it must not stop the server.
    text = run_gateway("--print-config", "x:y", ASGIGW_VERSION="1.2", ASGIGW_PRINT_CONFIG="").stdout
    assert effective(text)["app"][0] == '"x:y"'


# -- --version ------------------------------------------------------------------------------


def test_version_lists_libraries_and_fast_paths() -> None:
    result = run_gateway("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("asgigw 0.")
    assert lines[1].startswith("Python 3.")
    for library in ("h11 ", "hpack ", "wsproto ", "cryptography "):
        assert library in lines[2]
    assert lines[3].startswith("optional: ")


def test_root_is_the_repository() -> None:
    assert (ROOT / "pyproject.toml").is_file()
