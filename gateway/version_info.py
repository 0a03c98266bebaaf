"""``asgigw --version``: what is installed, read from package metadata without importing it."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

# The protocol and TLS libraries every install has.
CORE = ("h11", "hpack", "wsproto", "cryptography", "click")
# Optional accelerators and features, by the extra that brings them (pyproject.toml); the
# event loop package is uvloop on POSIX and winloop on Windows.
_LOOP_PACKAGE = "winloop" if sys.platform == "win32" else "uvloop"
OPTIONAL = (
    (_LOOP_PACKAGE, "fast"),
    ("httptools", "fast"),
    ("brotli", "compress"),
    ("zstandard", "compress"),
    ("prometheus-client", "metrics"),
    ("watchfiles", "reload"),
    ("acme", "acme"),
)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def version_text() -> str:
    """Several lines: asgigw and Python, the core libraries, then each optional one."""
    lines = [
        f"asgigw {_version('asgigw') or 'unknown'}",
        f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.platform})",
        "libraries: " + ", ".join(f"{name} {_version(name) or 'missing'}" for name in CORE),
    ]
    versions = {name: _version(name) for name, _ in OPTIONAL}
    found = [f"{name} {version}" for name, version in versions.items() if version]
    lines.append("optional: " + (", ".join(found) if found else "none installed"))
    missing = sorted({extra for name, extra in OPTIONAL if versions[name] is None})
    if missing:
        lines.append("not installed (extras): " + ", ".join(f"asgigw[{extra}]" for extra in missing))
    return "\n".join(lines)
