"""Static files at the edge (``--static URL_PREFIX=DIR``): answered without calling the app.

:class:`StaticFiles` maps a request to a file under one of the configured folders and
says what to answer (:class:`StaticResponse`); the stream sends it, the file's bytes as a
``FileBody`` event, which plain HTTP/1.1 turns into ``sendfile``. A path that names no file
returns None and goes to the app, so the app's own 404 page still works. A path that tries
to leave the folder (``..``, encoded slashes, backslashes, NUL, drive letters, a symlink
pointing outside) is answered 404 here and never reaches the file system outside DIR.
The HTTP rules (validators, conditions, ranges) live in :mod:`gateway.static_rules`.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, unquote_to_bytes

from gateway import platform
from gateway.asgi import split_target
from gateway.events import Headers, Request
from gateway.logs import address_label, escape
from gateway.static_rules import (
    CODINGS,
    RangeNotSatisfiable,
    accepted_codings,
    byte_range,
    content_type,
    entity_tag,
    http_date,
    if_range_holds,
    precondition_status,
)

log = logging.getLogger("gateway.error")

_ALLOW = b"GET, HEAD"
# Raw-path sequences that would turn into a separator or NUL once decoded.
_ENCODED_SEPARATORS = (b"%2f", b"%5c", b"%00")
# Device names Windows opens whatever the folder or extension ("nul.txt" is the null device).
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{name}{digit}" for name in ("com", "lpt") for digit in "123456789"]
)


@dataclass(frozen=True, slots=True)
class StaticResponse:
    """The answer to a static request. ``file`` (if any) is open; the receiver closes it.

    The body is ``count`` bytes of ``file`` from ``offset``, or ``body`` when there is no file.
    """

    status: int
    headers: Headers
    file: BinaryIO | None = None
    offset: int = 0
    count: int = 0
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Mount:
    """One ``--static`` entry: a raw URL prefix and the (absolute) folder it maps to."""

    prefix: bytes
    root: str


def error_response(status: int, phrase: str, headers: Headers | None = None) -> StaticResponse:
    """A short plain-text error answer (404, 403, 405, 500)."""
    body = f"{status} {phrase}\n".encode("ascii")
    fields = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    return StaticResponse(status, fields + (headers or []), body=body)


_NOT_FOUND = error_response(404, "Not Found")


def relative_parts(rest: bytes) -> list[str] | None:
    """The path segments below the prefix, or None when the path must not be served.

    Checked on the raw path, then on the decoded text: encoded ``/``, ``\\`` or NUL; a
    backslash or NUL; empty segments (``//``, which also covers absolute paths); segments
    starting with a dot (``.``, ``..`` and hidden files such as ``.env``); a colon (Windows
    drive letters and NTFS streams); trailing dots or spaces and device names (which
    Windows strips or maps to devices); control characters; bytes that are not UTF-8.
    A trailing ``/`` asks for the folder's ``index.html``.
    """
    lowered = rest.lower()
    if any(sequence in lowered for sequence in _ENCODED_SEPARATORS):
        return None
    try:
        text = unquote_to_bytes(rest).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\\" in text or "\x00" in text:
        return None
    parts = text.split("/")
    if parts[-1] == "":
        parts[-1] = "index.html"
    for part in parts:
        if not part or part[0] == "." or ":" in part or part[-1] in ". " or not part.isprintable():
            return None
        if part.partition(".")[0].lower() in _WINDOWS_DEVICES:
            return None
    return parts


def resolve(root: str, parts: list[str]) -> tuple[str, os.stat_result] | None:
    """The file ``parts`` names below ``root`` (resolved) and its stat; None if it leads out.

    Each component is lstat'ed: without symlinks, the usual case, that is the whole check
    and far cheaper than ``os.path.realpath``. With a symlink on the way, the full path is
    resolved and must stay inside ``root``. Raises ``OSError`` as ``os.stat`` would.
    """
    path = root
    for part in parts:
        path = os.path.join(path, part)
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            real = os.path.realpath(os.path.join(root, *parts))
            return (real, os.stat(real)) if _inside(real, os.path.realpath(root)) else None
    return path, info


def _inside(path: str, root: str) -> bool:
    path, root = os.path.normcase(path), os.path.normcase(root)
    return path.startswith(root) and path[len(root) : len(root) + 1] in ("", os.sep)


class StaticFiles:
    """The configured ``--static`` folders; :meth:`respond` answers one request."""

    def __init__(self, entries: tuple[str, ...], max_age: int) -> None:
        mounts = []
        for entry in entries:
            prefix, _, folder = entry.partition("=")
            raw_prefix = quote(prefix, safe="/:@!$&'()*+,;=-._~").encode("ascii")
            # Not resolved here: a symlink in DIR's own path (a deploy's "current" link)
            # is followed afresh on every request, as nginx does.
            mounts.append(Mount(raw_prefix, os.path.abspath(folder)))
        # The longest prefix wins when one folder is mounted inside another's prefix.
        self._mounts = sorted(mounts, key=lambda mount: len(mount.prefix), reverse=True)
        self._cache_control = b"no-cache" if max_age == 0 else b"public, max-age=%d" % max_age

    def respond(self, request: Request, client: tuple[str, int] | None) -> StaticResponse | None:
        """What to answer for ``request``; None when the app should answer it instead."""
        raw_path = split_target(request.target)[0]
        for mount in self._mounts:
            if raw_path.startswith(mount.prefix):
                break
        else:
            return None
        parts = relative_parts(raw_path[len(mount.prefix) :])
        if parts is None:
            return _NOT_FOUND
        path = os.path.join(mount.root, *parts)
        try:
            found = resolve(mount.root, parts)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return self._failed(client, path, exc)
        if found is None:
            return _NOT_FOUND  # a symlink pointing out of DIR
        real, info = found
        if not stat.S_ISREG(info.st_mode):
            return None if stat.S_ISDIR(info.st_mode) else _NOT_FOUND
        if request.method not in (b"GET", b"HEAD"):
            # RFC 9110 §15.5.6: 405 names the methods the resource does support.
            return error_response(405, "Method Not Allowed", [(b"allow", _ALLOW)])
        fields: dict[bytes, bytes] = {}
        for name, value in request.headers:
            fields[name] = fields[name] + b", " + value if name in fields else value
        coding, chosen, varies = self._choose_representation(fields.get(b"accept-encoding"), mount, parts, real)
        return self._respond_with_file(request.method, fields, path, (coding, chosen, varies), client)

    def _respond_with_file(
        self,
        method: bytes,
        fields: dict[bytes, bytes],
        path: str,
        representation: tuple[str | None, str, bool],
        client: tuple[str, int] | None,
    ) -> StaticResponse:
        coding, chosen, varies = representation
        try:
            file = os.fdopen(platform.open_file_for_reading(chosen), "rb", buffering=0)
        except OSError as exc:
            return self._failed(client, chosen, exc)
        try:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):  # replaced by something else since the stat
                file.close()
                return _NOT_FOUND
            answer = self._file_answer(method, fields, info, coding, varies, path)
        except BaseException:
            file.close()
            raise
        if answer.count == 0 or method == b"HEAD":
            file.close()
            return answer
        return StaticResponse(answer.status, answer.headers, file, answer.offset, answer.count)

    def _choose_representation(
        self, field: bytes | None, mount: Mount, parts: list[str], real: str
    ) -> tuple[str | None, str, bool]:
        """``(coding, file, varies)``: the precompressed sibling the client prefers, if any.

        ``varies`` is True when a sibling exists at all, so that every answer for this file
        says ``Vary: Accept-Encoding`` (RFC 9110 §12.5.5) and caches keep the variants apart.
        """
        qualities = accepted_codings(field)
        best: tuple[float, str, str] | None = None
        varies = False
        path = os.path.join(mount.root, *parts)
        for coding, suffix in CODINGS:
            if not os.path.isfile(path + suffix):  # one stat; checked further only if it exists
                continue
            try:
                found = resolve(mount.root, [*parts[:-1], parts[-1] + suffix])
            except OSError:
                continue
            if found is None or not stat.S_ISREG(found[1].st_mode):
                continue  # e.g. a symlink out of DIR
            sibling = found[0]
            varies = True
            quality = qualities.get(coding, 0.0)
            if quality > 0.0 and (best is None or quality > best[0]):
                best = (quality, coding, sibling)
        if best is None:
            return None, real, varies
        return best[1], best[2], varies

    def _file_answer(
        self,
        method: bytes,
        fields: dict[bytes, bytes],
        info: os.stat_result,
        coding: str | None,
        varies: bool,
        path: str,
    ) -> StaticResponse:
        size = info.st_size
        modified = int(info.st_mtime)
        etag = entity_tag(info.st_mtime_ns, size, coding)
        validators = [
            (b"etag", etag),
            (b"last-modified", http_date(modified)),
            (b"cache-control", self._cache_control),
        ]
        if varies:
            validators.append((b"vary", b"Accept-Encoding"))
        status = precondition_status(fields, etag, modified)
        if status == 304:
            # RFC 9110 §15.4.5: a 304 carries the fields a 200 would have had for caching.
            return StaticResponse(304, validators)
        if status == 412:
            return StaticResponse(412, [(b"content-length", b"0")])
        headers = [(b"content-type", content_type(path)), *validators, (b"accept-ranges", b"bytes")]
        if coding is not None:
            headers.append((b"content-encoding", coding.encode("ascii")))
        start, end = 0, size
        range_field = fields.get(b"range")
        # RFC 9110 §14.2: GET is the only method with range handling; If-Range may veto it.
        if range_field is not None and method == b"GET":
            if_range = fields.get(b"if-range")
            if if_range is None or if_range_holds(if_range, etag, modified):
                try:
                    selected = byte_range(range_field, size)
                except RangeNotSatisfiable:
                    return StaticResponse(416, [(b"content-range", b"bytes */%d" % size), (b"content-length", b"0")])
                if selected is not None:
                    start, end = selected
                    headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end - 1, size)))
                    status = 206
        headers.append((b"content-length", b"%d" % (end - start)))
        return StaticResponse(status or 200, headers, offset=start, count=end - start)

    def _failed(self, client: tuple[str, int] | None, path: str, exc: OSError) -> StaticResponse:
        """One log line for a file we found but cannot read; 403, 404 or 500 for the client."""
        log.warning("%s - static file %s: %s", address_label(client), escape(path), exc.strerror or exc)
        if isinstance(exc, PermissionError):
            return error_response(403, "Forbidden")
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return _NOT_FOUND  # vanished between the stat and the open
        return error_response(500, "Internal Server Error")


def open_regular_file(path: object) -> tuple[BinaryIO, int]:
    """Open an ``http.response.pathsend`` path: ``(file, size)``; ValueError if unusable.

    ASGI Path Send extension: the path is absolute and names a regular file.
    """
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ValueError(f"'path' of http.response.pathsend must be an absolute path (str), got {path!r}")
    try:
        file = os.fdopen(platform.open_file_for_reading(path), "rb", buffering=0)
    except OSError as exc:
        raise ValueError(f"http.response.pathsend cannot open {path!r}: {exc.strerror or exc}") from None
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode):
        file.close()
        raise ValueError(f"http.response.pathsend {path!r} is not a regular file")
    return file, info.st_size
