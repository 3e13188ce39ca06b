"""One trial in its own process: ``python -m cs336_lm.sweep.trial RESULT.json --config FILE key=value …``.

It is ``lm-train``'s library path (``load_config`` then ``cs336_lm.training.train``), so the trial's directory is
exactly what ``lm-train`` writes, SIGINT/SIGTERM save a checkpoint and end it as they end ``lm-train``, and a crash
stays inside this process. How it ended goes to ``RESULT.json`` (written whole): ``{"status": "done" | "interrupted"
| "diverged" | "failed", "error": "one line"}``; the log (stdout and stderr) is the caller's to keep.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def run_trial(config: str, overrides: list[str]) -> tuple[str, str]:
    """(status, error line) of training ``config`` with ``overrides``."""
    from cs336_lm.config import load_config
    from cs336_lm.errors import DivergenceError, LMError
    from cs336_lm.training import train

    try:
        result = train(load_config(config, overrides))
    except DivergenceError as e:
        return "diverged", str(e)
    except LMError as e:
        return "failed", str(e)
    except KeyboardInterrupt:
        return "interrupted", ""
    except (
        Exception
    ) as e:  # a bug or the system (out of memory): the traceback goes to the log, one line to the summary
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return "failed", f"{type(e).__name__}: {first}" if first else type(e).__name__
    return ("interrupted" if result.stopped_by else "done"), ""


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--config":
        print("usage: python -m cs336_lm.sweep.trial RESULT.json --config FILE [key=value …]", file=sys.stderr)
        return 2
    from cs336_lm.fileio import atomic_write

    status, error = run_trial(argv[2], argv[3:])
    if error:
        print(f"error: {error}", file=sys.stderr)
    with atomic_write(Path(argv[0]), "w", encoding="utf-8") as f:
        json.dump({"status": status, "error": error}, f)
    return 0 if status in ("done", "interrupted") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
