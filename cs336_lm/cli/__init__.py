"""Command-line entry points: each parses arguments, validates them and calls one library function.

``run_main`` gives every command the same behaviour for bad input: one ``error: …`` line on stderr and
exit status 2 instead of a traceback.
"""

import sys
from collections.abc import Callable

from cs336_lm.errors import LMError

USAGE_ERROR = 2


def run_main(fn: Callable[[], int | None]) -> int:
    """Call ``fn`` and map user-facing failures to one stderr line and exit status 2.

    ``LMError`` (our own), ``FileNotFoundError``/``PermissionError``/``IsADirectoryError`` (a path the
    user gave) and ``KeyboardInterrupt`` (exit 130) are reported without a traceback.
    """
    try:
        return fn() or 0
    except LMError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        name = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{name}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
