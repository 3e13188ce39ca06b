"""Token data: memory-mapped token files, random training batches and fixed validation windows.

``cs336_lm.data.tokens`` holds the file format and batching; ``cs336_lm.data.prepare`` turns text into token files.
"""

from cs336_lm.data.tokens import (
    check_token_ids,
    eval_window_starts,
    get_batch,
    iter_eval_batches,
    load_tokens,
    token_dtype,
    write_tokens,
)

__all__ = [
    "check_token_ids",
    "eval_window_starts",
    "get_batch",
    "iter_eval_batches",
    "load_tokens",
    "token_dtype",
    "write_tokens",
]
