"""A module whose own import fails: loading ``broken_import:app`` must be a clear error."""

from __future__ import annotations

raise RuntimeError("broken_import fails on purpose while importing")
