"""Whether the C parts of driftline (``setup.py``) are built, for tests that hold them to the Python code.

Where a module did not build (no C compiler), driftline runs the Python and
numpy code it mirrors, and its tests run that code alone, unless
``DRIFTLINE_REQUIRE_NATIVE=1`` (CI sets it) makes a missing module a failure:
a build that fell back silently would otherwise test nothing of it.
"""

from __future__ import annotations

import os


def built(function: object, module: str) -> bool:
    """Whether ``function`` (None when its module did not import) is there to test."""
    if function is None and os.environ.get("DRIFTLINE_REQUIRE_NATIVE") == "1":
        raise AssertionError(f"{module} was not built (a C compiler and Python's headers are needed)")
    return function is not None
