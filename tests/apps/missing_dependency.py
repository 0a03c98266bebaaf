"""A module that imports a package that is not installed (a missing dependency of the app)."""

from __future__ import annotations

import asgigw_test_no_such_dependency  # noqa: F401

app = None
