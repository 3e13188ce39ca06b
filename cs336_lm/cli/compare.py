"""``lm-compare RUN_DIR HF_DIR --prompt TEXT``: where do our model and a HuggingFace model part ways?

    lm-compare runs/tinystories hf/tinystories --prompt "Once upon a time"

Prints max |ours − hf| per stage (embeddings; each block's attention and output; final norm; logits), marks the
first stage beyond tolerance and exits with status 1 when one is (0 when all agree, 2 for bad input). The work is
``cs336_lm.interop.compare`` (docs/interop.md). torch's CPU threads follow ``--threads`` (``auto``: one per idle
core, ``cs336_lm.run.threads``), stated on stderr.
"""

import argparse
import sys
from pathlib import Path

from cs336_lm.cli import HelpFormatter, add_threads_option, cpu_threads, run_main
from cs336_lm.errors import InteropError
from cs336_lm.interop.compare import DEFAULT_ATOL, DEFAULT_RTOL, compare, format_table

DIVERGED = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-compare",
        description="Run a cs336_lm run and a HuggingFace model folder on the same ids and print the largest "
        "difference at every stage; exit 1 when a stage is beyond tolerance.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", type=Path, help="run directory or checkpoint file")
    p.add_argument("hf_dir", type=Path, metavar="HF_DIR", help="HuggingFace model folder")
    p.add_argument("--prompt", required=True, help="text to run both models on (encoded with the run's tokenizer)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="absolute tolerance per element")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="tolerance relative to |hf| per element")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    add_threads_option(p)
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.atol < 0 or args.rtol < 0:
        raise InteropError(f"--atol and --rtol must be >= 0, got {args.atol} and {args.rtol}")
    with cpu_threads(args.threads) as threads:
        result = compare(args.run, args.hf_dir, args.prompt, atol=args.atol, rtol=args.rtol, device=args.device)
    print(f"torch CPU threads: {threads.describe()}", file=sys.stderr)  # on stderr: stdout holds the table
    print(format_table(result))
    return DIVERGED if result.first_divergence is not None else 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
