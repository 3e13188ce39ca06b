"""``lm-sweep --config FILE [key=value …] [key=v1,v2,… …] --out DIR``: a grid or a search over config values.

Every trial is an ordinary run directory ``DIR/<name from its swept values>``; the record of the sweep is an Optuna
study (``DIR/study.db``, or ``--storage URL``). The library is ``cs336_lm.sweep``; this module parses the arguments,
checks every point against the config schema before anything runs, and prints the summary. Exit status: 0 when every
trial is done or diverged (or a signal stopped the sweep cleanly), 1 when a trial failed, 2 for bad input.
"""

import argparse
import sys

from cs336_lm.cli import HelpFormatter, run_main

EPILOG = """\
arguments (after the options):
  key=value             one value for every trial, as lm-train's overrides (parsed like YAML: 1e-3, true, null)
  key=v1,v2,...         a grid axis; several axes make the product (the first varies slowest):
                          optim.lr=1e-3,3e-3,1e-2 train.batch_size=8,32          six trials
  key=loguniform(A,B)   a search range, A > 0 (float, sampled on a log scale)
  key=uniform(A,B)      a search range (float)
  key=int(A,B)          a search range (integer, both ends included)
  key=choice(A,B,...)   a search choice; in a search a comma list is a choice too
  A search needs --trials N; --sampler tpe (default) or random draws the points. A value in brackets or quotes
  ([1,2], "a,b") is one value, not an axis.

trials:
  DIR/<name> is each trial's run directory (name from its swept values: lr=0.001,batch_size=8), which lm-generate,
  lm-serve, lm-plot, lm-perplexity and lm-export read like any run; DIR/logs/<name>.log is its output. A trial whose
  loss becomes NaN/inf or rises train.diverge_margin above its start is recorded as diverged; one that fails for
  another reason as failed, with its error line; the sweep goes on either way.

resuming and sharing:
  Run the same command again: finished trials are left alone, interrupted ones resume (train.resume=auto), the
  rest run. Ctrl-C (SIGINT) stops the running trials cleanly (each saves a checkpoint). Several lm-sweep processes
  against one study (one DIR on one machine, or one --storage URL from several machines, each with the same
  arguments) share the trials; none runs twice. Another sweep with other axes into the same DIR is refused.

summary:
  Printed at the end and written to DIR/summary.csv and DIR/summary.md: one row per trial (swept values, status,
  best and final validation loss, tokens, tokens/s, wall time), sorted by validation loss; with --seeds, each
  point's mean +- std and whether its gap to the best point is beyond the spread. lm-plot DIR --out FILE.png draws
  the sweep. See docs/experiments.md.

  lm-sweep --config configs/debug.yaml optim.lr=1e-3,3e-3,1e-2 train.batch_size=8,32 --out runs/grid
  lm-sweep --config configs/debug.yaml "optim.lr=loguniform(1e-4,1e-1)" --trials 8 --out runs/search
"""


class _HelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the epilog's line breaks."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-sweep",
        description="Train a grid or a search of configs, each trial an ordinary run directory, recorded in an\n"
        "Optuna study; then summarise them.",
        formatter_class=_HelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--config", required=True, metavar="FILE", help="experiment config (YAML), as lm-train's")
    p.add_argument("items", nargs="*", metavar="key=value", help="fixed values, grid axes and search ranges (below)")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep's directory: trials, study.db, summary")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="a search: how many points to draw")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="a search's sampler")
    p.add_argument(
        "--seeds", type=int, default=1, metavar="S", help="repeat each point with this many seeds (train.seed + i)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="K",
        help="trials at once on this machine (default: one per GPU where there are several, else 1)",
    )
    p.add_argument("--prune", choices=("none", "median"), default="none", help="stop trials worse than the median")
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="the study's database (default: sqlite:///DIR/study.db); e.g. postgresql://user@host/db to share it",
    )
    p.add_argument("--study", default=None, metavar="NAME", help="the study's name (default: DIR's name)")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from cs336_lm.errors import ConfigError
    from cs336_lm.sweep import SweepPlan, run_sweep
    from cs336_lm.sweep.summary import markdown

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    plan = SweepPlan.from_args(args.config, args.items, seeds=args.seeds, trials=args.trials, sampler=args.sampler)
    result = run_sweep(plan, args.out, args.storage, args.workers, args.prune, args.study)
    print(markdown(result.rows), end="")
    print(f"wrote {result.summary_csv} and {result.summary_md}")
    if result.stopped_by:
        print(f"stopped by {result.stopped_by}: run the same command again to resume", file=sys.stderr)
        return 0
    return 1 if any(r.status == "failed" for r in result.rows) else 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
