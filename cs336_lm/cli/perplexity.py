"""``lm-perplexity RUN_DIR_OR_CHECKPOINT --data FILE``: loss, perplexity and bits per byte of a checkpoint on a text.

    lm-perplexity runs/tinystories --data data/TinyStoriesV2-GPT4-valid.txt
    lm-perplexity runs/tinystories --data data/valid.npy --context 256 --stride 128
    lm-perplexity runs/tinystories --data data/valid.npy --all-checkpoints --out runs/tinystories/eval-valid.jsonl
    lm-plot runs/tinystories runs/tinystories/eval-valid.jsonl --out loss.png

Every token of the file but the first is scored once, in windows of ``--context`` tokens moved by ``--stride``;
nothing trains. ``--all-checkpoints`` gives a row per checkpoint of the run; ``--out`` writes them as JSON lines
that ``lm-plot`` draws; ``--json`` prints JSON instead of the table. The work is ``cs336_lm.evaluation``
(docs/evaluation.md). torch's CPU threads follow ``--threads`` (``auto``: one per idle core, ``cs336_lm.run.threads``),
stated on stderr with the results. Bad input prints one ``error:`` line and exits with status 2.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from cs336_lm.cli import HelpFormatter, add_threads_option, check_output_apart, cpu_threads, run_main
from cs336_lm.errors import DataError
from cs336_lm.evaluation import EvalResult, evaluate_run
from cs336_lm.fileio import atomic_write


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-perplexity",
        description="Mean loss, perplexity and bits per byte of a run's checkpoint(s) on a .txt or .npy file.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", type=Path, help="run directory (its latest checkpoint) or a checkpoint file")
    p.add_argument("--data", type=Path, required=True, help="UTF-8 .txt (encoded with the run's tokenizer) or .npy")
    p.add_argument("--all-checkpoints", action="store_true", help="a row per checkpoint of the run, oldest first")
    p.add_argument("--context", type=int, default=None, help="tokens per window (default: the model's context)")
    p.add_argument("--stride", type=int, default=None, help="tokens between windows (default: --context)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward (default: fits 256 MB logits)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="fp32, or bf16 autocast")
    add_threads_option(p)
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: RUN/tokenizer)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of the table")
    p.add_argument("--out", type=Path, default=None, help="also write the records as JSON lines (lm-plot reads it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def check_args(args: argparse.Namespace) -> None:
    for name in ("context", "stride", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise DataError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def format_table(results: list[EvalResult]) -> str:
    """A header line naming the data and windows, then one row per checkpoint."""
    r0 = results[0]
    lines = [
        f"{r0.data}: {r0.tokens:,} tokens scored ({r0.bytes:,} bytes), context {r0.context}, stride {r0.stride}",
        f"{'checkpoint':<48} {'step':>8} {'loss':>8} {'ppl':>10} {'bits/byte':>10}",
    ]
    for r in results:
        ppl = f"{r.perplexity:10.3f}" if math.isfinite(r.perplexity) else f"{'inf':>10}"
        lines.append(f"{r.checkpoint:<48} {r.step:>8} {r.loss:>8.4f} {ppl} {r.bits_per_byte:>10.4f}")
    return "\n".join(lines)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    check_output_apart(args.out, args.run, args.data, args.tokenizer)
    with cpu_threads(args.threads) as threads:
        results = evaluate_run(
            args.run,
            args.data,
            context=args.context,
            stride=args.stride,
            all_checkpoints=args.all_checkpoints,
            device=args.device,
            bf16=args.dtype == "bf16",
            batch_size=args.batch_size,
            tokenizer_dir=args.tokenizer,
            progress=False if args.quiet else None,
        )
    print(f"torch CPU threads: {threads.describe()}", file=sys.stderr)  # on stderr: stdout holds the table or JSON
    records = [r.record() for r in results]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    if args.json:
        print(json.dumps(records if args.all_checkpoints else records[0], indent=2))
    else:
        print(format_table(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
