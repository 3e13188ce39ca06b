"""``lm-scaling plan|run|fit|verify``: an IsoFLOP scaling study, planned as an lm-sweep study, fitted, and checked.

    lm-scaling plan --config configs/demo.yaml --budgets 8e11,2e12,5e12 --sizes 5 --out runs/iso [key=value …]
    lm-scaling plan … --dry-run          # the table with an estimated time per run; writes nothing
    lm-scaling run runs/iso [--workers 2]
    lm-scaling fit runs/iso [--predict 2e13]
    lm-scaling verify runs/iso --budget 2e13

``plan`` is ``cs336_lm.scaling.plan`` (sizes and steps per budget) written by ``cs336_lm.scaling.study``; ``run`` is
``cs336_lm.scaling.sweep`` (the runs as lm-sweep trials); ``fit`` is
``cs336_lm.scaling.fit`` on the runs' final validation losses, drawn by ``cs336_lm.scaling.plot``; ``verify`` is
``cs336_lm.scaling.verify``. Bad input is one ``error:`` line and exit status 2. docs/scaling-laws.md.
"""

import argparse
import math
import sys

from cs336_lm.cli import HelpFormatter, add_threads_option, run_main
from cs336_lm.errors import ConfigError

EPILOG = """\
budgets are training FLOPs counted exactly (cs336_lm.nn.accounting.training_flops_per_token: matmuls, 3x the
forward, attention's T x T products included), e.g. --budgets 2e12,5e12,1.25e13.
See docs/scaling-laws.md for the method, the size rule and a study run on a 2-core CPU.
"""


class _HelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the epilog's line breaks."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-scaling",
        description="Plan, fit and verify an IsoFLOP scaling study (compute-optimal model size and tokens).",
        formatter_class=_HelpFormatter,
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{plan,run,fit,verify}")

    plan = sub.add_parser("plan", help="sizes and steps per budget; write the study", formatter_class=HelpFormatter)
    plan.add_argument("--config", required=True, metavar="FILE", help="base lm-train config (YAML)")
    plan.add_argument("overrides", nargs="*", metavar="key=value", help="base config overrides (e.g. data paths)")
    plan.add_argument("--budgets", required=True, metavar="C1,C2,…", help="compute budgets in training FLOPs")
    plan.add_argument("--sizes", type=int, default=5, metavar="K", help="model sizes per budget")
    plan.add_argument("--out", metavar="DIR", help="study directory (required unless --dry-run)")
    plan.add_argument("--dry-run", action="store_true", help="print the table with measured times; write nothing")
    plan.add_argument("--tokens-per-param", type=float, default=20.0, help="D/N at the centre of each budget's sizes")
    plan.add_argument("--span", type=float, default=16.0, help="largest / smallest target N within a budget")
    plan.add_argument("--min-steps", type=int, default=50, help="fewest optimizer steps a planned run may take")
    add_threads_option(plan)

    run = sub.add_parser("run", help="train (or resume) the study's runs", formatter_class=HelpFormatter)
    run.add_argument("dir", metavar="DIR", help="a study directory written by lm-scaling plan")
    run.add_argument("--workers", type=int, help="runs at a time (lm-sweep's default: one per GPU, else 1)")
    run.add_argument("--storage", metavar="URL", help="lm-sweep's shared study database (default: DIR/study.db)")

    fit = sub.add_parser("fit", help="fit the IsoFLOP parabolas and the power laws", formatter_class=HelpFormatter)
    fit.add_argument("dir", metavar="DIR", help="a study directory written by lm-scaling plan")
    fit.add_argument("--predict", type=float, metavar="C", help="also predict N_opt, D_opt and the loss at budget C")
    fit.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    fit.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    fit.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    fit.add_argument("--plot", metavar="PNG", help="figure path (default: DIR/isoflops.png)")

    verify = sub.add_parser("verify", help="train the predicted optimum above the fits", formatter_class=HelpFormatter)
    verify.add_argument("dir", metavar="DIR", help="a study directory with finished runs")
    verify.add_argument("--budget", type=float, required=True, metavar="C", help="budget above every fitted one")
    verify.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    verify.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    verify.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    add_threads_option(verify)
    return p


def _plan(args: argparse.Namespace) -> int:
    from cs336_lm.config import load_config
    from cs336_lm.scaling.plan import parse_budgets, plan_study, table, tokens_per_step

    if args.out is None and not args.dry_run:
        raise ConfigError("plan needs --out DIR (or --dry-run)")
    cfg = load_config(args.config, args.overrides)
    options = {"tokens_per_param": args.tokens_per_param, "span": args.span, "min_steps": args.min_steps}
    for name, value in options.items():
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
    t = cfg.train
    step_tokens = tokens_per_step(t.batch_size, t.grad_accum_steps, cfg.model.context_length)
    runs = plan_study(cfg.model.args, parse_budgets(args.budgets), args.sizes, step_tokens, **options)
    if args.dry_run:
        from tqdm import tqdm

        from cs336_lm.cli import cpu_threads
        from cs336_lm.scaling.measure import tokens_per_second

        shapes = {tuple(r.shape.items()): r.shape for r in runs}  # budgets share shapes: each is measured once
        with cpu_threads(args.threads) as threads:
            bar = tqdm(shapes.items(), desc=f"training throughput ({threads.count} thread(s))", unit="shape")
            measured = {key: tokens_per_second(cfg.model.args.replace(**shape), t.batch_size) for key, shape in bar}
        print(table(runs, {r.name: measured[tuple(r.shape.items())] for r in runs}))
        return 0
    from cs336_lm.scaling.study import new_study
    from cs336_lm.scaling.sweep import describe_next_step, sweep_available, sweep_plan

    layout = "sweep" if sweep_available() else "runs"
    study = new_study(args.out, args.config, args.overrides, options, runs, layout)
    if layout == "sweep":
        sweep_plan(study)  # every trial checked against the schema before the plan is written
    print(table(runs))
    print(f"wrote {study.save()}")
    print(describe_next_step(study))
    return 0


def _run(args: argparse.Namespace) -> int:
    from cs336_lm.scaling.study import load_study
    from cs336_lm.scaling.sweep import run_study

    unfinished = run_study(load_study(args.dir), args.workers, args.storage)
    if unfinished:
        print(f"{len(unfinished)} run(s) did not finish: {', '.join(unfinished)}", file=sys.stderr)
        return 1
    print(f"every run finished; next: lm-scaling fit {args.dir}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from cs336_lm.scaling.report import fit_study

    print(fit_study(args.dir, args.predict, args.bootstrap, args.confidence, args.seed, args.plot))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from cs336_lm.cli import cpu_threads
    from cs336_lm.scaling.verify import verify

    with cpu_threads(args.threads):
        print(verify(args.dir, args.budget, args.bootstrap, args.confidence, args.seed))
    return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return {"plan": _plan, "run": _run, "fit": _fit, "verify": _verify}[args.command](args)


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
