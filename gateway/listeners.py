"""Listening sockets: bound here once, then served by a Server (and handed to workers).

Where they come from, in this order:

1. systemd socket activation: with ``LISTEN_PID`` naming this process, the ``LISTEN_FDS``
   sockets from descriptor 3 on (sd_listen_fds(3)); ``LISTEN_FDNAMES`` (a .socket unit's
   ``FileDescriptorName=``) says what each serves: ``redirect`` the ``--redirect-http``
   responder, ``proxy`` the app behind a PROXY protocol header, anything else the app.
   The variables are removed once read, so neither workers nor the app see them again.
2. ``--fd N``: a listening socket this process inherited from its parent.
3. ``--uds PATH``: a Unix domain socket (POSIX), created with ``--uds-mode``; a stale file
   left by a crashed server is replaced, a live one is an error.
4. ``--bind``/``--host``/``--port`` TCP addresses, unless ``--fd``/``--uds`` sockets were
   asked for (then ``--host``/``--port`` are not used; ``--bind`` still is). The extra
   listeners (``--redirect-http``, ``--proxy-protocol-bind``) are always bound.

With systemd's sockets, they are all that is served: systemd owns the ports.

Each becomes a :class:`ListeningSocket`: the socket and the :class:`~gateway.config.ListenerSpec`
it serves. TLS, PROXY protocol and redirects apply to every kind alike.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import MutableMapping, Sequence
from typing import NamedTuple

from gateway import platform
from gateway.config import BindAddress, Config, ListenerSpec

log = logging.getLogger("gateway.error")

SD_LISTEN_FDS_START = 3


class StartupError(Exception):
    """The server cannot start (e.g. the port is taken); the message is one line."""


class ListeningSocket(NamedTuple):
    """A socket bound by :func:`bind_sockets` and the listener it serves."""

    sock: socket.socket
    listener: ListenerSpec


def describe(sock: socket.socket) -> str:
    """``127.0.0.1:8000``, ``[::1]:8443`` or ``unix:/run/asgigw.sock``, for log lines."""
    name = sock.getsockname()
    if isinstance(name, str | bytes):
        return f"unix:{os.fsdecode(name)}"
    host, port = str(name[0]), int(name[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_sockets(config: Config, environ: MutableMapping[str, str] | None = None) -> list[ListeningSocket]:
    """Every listening socket ``config`` asks for (see the module docstring), bound once.

    The workers' supervisor binds here and hands the sockets to its workers, so port 0,
    "address already in use" and bind errors happen once, in one process, before any app
    starts. Like asyncio, a host name gets one socket per address it resolves to, and IPv6
    sockets are IPv6-only (an IPv4 bind of the same port is a separate socket).
    """
    environ = os.environ if environ is None else environ
    bound: list[ListeningSocket] = []
    try:
        activated = _systemd_sockets(config, environ) if config.systemd_sockets else []
        if activated:
            # systemd owns the ports: its sockets replace every address of the config.
            log.info(
                "serving the %d sockets of systemd socket activation instead of the configured addresses",
                len(activated),
            )
            return activated
        for fd in config.fds:
            bound.append(ListeningSocket(_inherited(fd), ListenerSpec(None, config.proxy_protocol, fd=fd)))
        for path in config.uds:
            sock = _bind_unix(path, config.uds_mode, config.backlog)
            bound.append(ListeningSocket(sock, ListenerSpec(None, config.proxy_protocol, path=path)))
        tcp_too = bool(config.bind) or not (config.fds or config.uds)
        for spec in config.listeners:
            if spec.extra or tcp_too:
                assert spec.address is not None
                bound.extend(ListeningSocket(sock, spec) for sock in _bind_address(spec.address, config.backlog))
    except BaseException:
        for sock, _ in bound:
            sock.close()
        raise
    return bound


def remove_unix_sockets(sockets: Sequence[ListeningSocket]) -> None:
    """Delete the files of the ``--uds`` sockets bound here (at the end of the process)."""
    for _, spec in sockets:
        if spec.path is not None:
            try:
                os.unlink(spec.path)
            except OSError:
                pass


def listen_error(address: BindAddress, exc: OSError) -> StartupError:
    """The one-line reason an address cannot be listened on."""
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return StartupError(f"cannot listen on {address.url_host()}:{address.port}: {reason}")


def _bind_address(address: BindAddress, backlog: int) -> list[socket.socket]:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise listen_error(address, exc) from None
    bound: list[socket.socket] = []
    for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
        sock = socket.socket(family, kind, proto)
        try:
            if platform.reuse_address():
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            for previous in bound:
                previous.close()
            raise listen_error(address, exc) from None
        bound.append(sock)
    return bound


def _bind_unix(path: str, mode: int | None, backlog: int) -> socket.socket:
    where = f"--uds {path}"
    if not platform.unix_sockets_available():
        raise StartupError(f"{where}: Unix domain sockets are not served on this platform (use --bind)")
    _remove_stale(path, where)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartupError(f"{where}: {exc.strerror or exc}") from None
    return sock


def _remove_stale(path: str, where: str) -> None:
    """Unlink a socket file nobody listens on; refuse a live one or any other file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise StartupError(f"{where}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # left by a server that did not stop cleanly
        log.info("%s: removed the stale socket file", where)
        return
    except OSError as exc:
        raise StartupError(f"{where}: cannot check the existing socket: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise StartupError(f"{where}: another process is listening on it")


def _inherited(fd: int, what: str = "--fd") -> socket.socket:
    try:
        sock = platform.inherited_socket(fd)
    except OSError as exc:
        raise StartupError(f"{what} {fd}: not an open socket ({exc.strerror or exc})") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_ACCEPTCONN", 30)):
        sock.detach()
        raise StartupError(f"{what} {fd}: not a listening stream socket")
    sock.setblocking(False)
    return sock


def _systemd_sockets(config: Config, environ: MutableMapping[str, str]) -> list[ListeningSocket]:
    """The sockets of systemd socket activation, when they are meant for this process."""
    count_text, pid_text = environ.get("LISTEN_FDS"), environ.get("LISTEN_PID")
    if not count_text or not pid_text:
        return []
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    for variable in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        environ.pop(variable, None)
    if not (pid_text.isdigit() and int(pid_text) == os.getpid()):
        return []  # meant for another process (a parent that did not clear them)
    if not count_text.isdigit() or not 1 <= int(count_text) <= 1024:
        raise StartupError(f"LISTEN_FDS={count_text!r}: not a number of sockets")
    activated: list[ListeningSocket] = []
    for index in range(int(count_text)):
        fd = SD_LISTEN_FDS_START + index
        name = names[index] if index < len(names) else ""
        spec = ListenerSpec(
            None,
            proxy_protocol=name == "proxy" or (config.proxy_protocol and name != "redirect"),
            redirect=name == "redirect",
            fd=fd,
            name=name or None,
        )
        activated.append(ListeningSocket(_inherited(fd, "systemd socket (LISTEN_FDS)"), spec))
    log.debug("systemd socket activation: %d sockets (%s)", len(activated), ", ".join(names) or "unnamed")
    return activated
