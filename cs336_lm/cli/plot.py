"""``lm-plot RUN_DIR… --out FILE.png``: training/validation loss and learning rate of one or several runs, and the
per-checkpoint evaluations that ``lm-perplexity --all-checkpoints --out FILE.jsonl`` wrote (pass FILE.jsonl beside
them). ``lm-plot SWEEP_DIR --out FILE.png``: a sweep that ``lm-sweep`` wrote, as two figures
(``cs336_lm.sweep.plot``)."""

import argparse
from pathlib import Path

from cs336_lm.cli import HelpFormatter, check_output_apart, run_main
from cs336_lm.errors import ConfigError
from cs336_lm.training.plot import plot_runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-plot",
        description="Plot loss against steps and tokens, and the learning rate, from runs' metrics.jsonl files "
        "(and lm-perplexity's per-checkpoint records).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run directories (each with metrics.jsonl), or JSON-lines files: a metrics.jsonl, or lm-perplexity --out; "
        "or one lm-sweep directory: every trial coloured by its swept value in FILE.png, and the final loss against "
        "each swept value in FILE-values.png",
    )
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--title", default=None, help="figure title")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.title is not None:
        try:
            args.title.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 arrive from argv as lone surrogates
            raise ConfigError(f"--title {args.title!r} is not UTF-8 text") from None
    from cs336_lm.sweep.plot import is_sweep

    if any(is_sweep(run) for run in args.runs):
        if len(args.runs) != 1:
            raise ConfigError("lm-plot draws one sweep directory at a time, without other runs beside it")
        from cs336_lm.sweep.plot import plot_sweep

        check_output_apart(args.out, None, *args.runs)
        for path in plot_sweep(args.runs[0], args.out, title=args.title):
            print(f"wrote {path}")
        return 0
    for run in args.runs:  # a run directory is read for its metrics and config; a file is read itself
        check_output_apart(args.out, run if Path(run).is_dir() else None, None if Path(run).is_dir() else run)
    out = plot_runs(args.runs, args.out, title=args.title)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
