"""Python literals read from text, safely from many threads at once.

Feature names carry their parameters as literals (``coeff_0``, ``attr_"real"``), read back
with :func:`ast.literal_eval`. On CPython 3.11 the AST constructor's recursion counter is one
per interpreter, not per thread: when a garbage-collection finalizer hands the GIL to another
thread in the middle of a parse, two parses interleave and one fails with ``SystemError: AST
constructor recursion depth mismatch`` (python/cpython#106905). Era batches run on the task
runner's threads, and CI saw a batch fail that way; one lock around the parse keeps eraflow's
own parses apart.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_PARSE_LOCK = threading.Lock()


def read_literal(text: str) -> Any:
    """The value of a Python literal (``ast.literal_eval``), one parse at a time.

    Raises ``ValueError`` or ``SyntaxError`` as :func:`ast.literal_eval` does.
    """
    with _PARSE_LOCK:
        return ast.literal_eval(text)
