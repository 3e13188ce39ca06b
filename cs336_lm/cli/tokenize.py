"""``lm-tokenize --tokenizer DIR INPUT… --out FILE``: encode UTF-8 text files into one ``.npy`` token file.

The work is ``cs336_lm.data.prepare.tokenize_files``: chunks cut at special tokens, encoded by worker
processes, concatenated in order. Files are encoded each on its own and their ids concatenated in the order
given. ``--backend`` chooses the encoder: ``auto`` (tiktoken when it is installed and maps this vocabulary
exactly, else ours), ``ours`` or ``tiktoken``; the ids are the same. Bad input (missing tokenizer or input,
non-UTF-8 text, an output that cannot be written) prints one line and exits with status 2; the output file is
then never half-written.
"""

import argparse
import math
from pathlib import Path

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.data.prepare import DEFAULT_CHUNK_BYTES, tokenize_files
from cs336_lm.errors import DataError
from cs336_lm.tokenizer.tiktoken_backend import BACKENDS

MB = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-tokenize",
        description="Encode UTF-8 text files with a trained tokenizer into one 1-D .npy token file "
        "(uint16 when the vocabulary has at most 65,536 ids, else uint32).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="UTF-8 text files, encoded in this order")
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory (vocab.json, merges.txt, …)")
    p.add_argument("--out", type=Path, required=True, help="token file to write, e.g. data/train.npy")
    p.add_argument("--num-workers", type=int, default=None, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--chunk-mb", type=float, default=DEFAULT_CHUNK_BYTES / MB, help="text per worker task, in megabytes"
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="encoder: tiktoken where it maps this vocabulary exactly (same ids, faster), else ours; the exactness "
        "verdict is remembered per vocabulary in ~/.cache/cs336_lm (or $CS336_LM_CACHE)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_workers is not None and args.num_workers < 1:
        raise DataError(f"--num-workers must be at least 1, got {args.num_workers}")
    if not 0 < args.chunk_mb < math.inf:
        raise DataError(f"--chunk-mb must be a positive number, got {args.chunk_mb}")
    stats = tokenize_files(
        args.tokenizer,
        args.inputs,
        args.out,
        num_workers=args.num_workers,
        chunk_bytes=max(1, int(args.chunk_mb * MB)),
        progress=False if args.quiet else None,
        backend=args.backend,
    )
    if not args.quiet:
        print(
            f"wrote {stats.out_path}: {stats.tokens:,} tokens ({stats.dtype}) from {stats.bytes / MB:,.1f} MB "
            f"in {stats.files} file(s), {stats.seconds:.1f} s, {stats.mb_per_s:.2f} MB/s "
            f"({stats.workers} worker(s), {stats.chunks} chunks, {stats.bytes / max(stats.tokens, 1):.2f} bytes/token, "
            f"{stats.backend} encoder)"
        )
        if stats.backend_note:
            print(f"note: encoded with ours, not tiktoken: {stats.backend_note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
