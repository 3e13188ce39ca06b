"""A speedrun measured in steps to a target loss: how few optimizer steps each training recipe needs to end at the
validation loss that a reference recipe reaches in N steps.

Protocol (issue 24). Each reference recipe (``--references``, default the shipped demo AdamW and AdamW with a tuned
learning rate) trains ``--steps`` N steps over every seed and ends at validation loss L, the mean over the seeds.
Every other recipe is then given fewer steps: a run of k steps is its own full run (``train.max_steps=k``, its
warmup scaled by k/N, its cosine or wsd schedule over the k steps), never a cut-off longer run. The benchmark
bisects the ``--ladder`` of step counts (fractions of N) for the fewest at which the recipe's mean over the seeds
is still ≤ L (assuming fewer steps never end lower), and reports those steps, their ratio to N, the training wall
time of such a run beside the reference's, and the final loss with its spread. A gain is called significant when
the recipe's losses at the reported steps lie below the reference's at N by more than their combined spread: a
one-sided Welch t-test with p < ``--alpha`` (0.05; scipy's when installed, else the normal approximation). The
"steps, p<α" column is a second bisection with that test as the criterion, modded-nanogpt's rule for a record.

A recipe is a named set of config overrides on top of ``--config`` (``configs/demo.yaml``) and the shape flags:

  adamw        the demo optimizer as first shipped: AdamW at lr 3e-3 (configs/demo.yaml now ships the tuned 1e-2)
  adamw-tuned  AdamW at 1e-2, or the best ``optim.lr`` of a sweep (``--lrs``)
  muon         ``optim.name=muon`` with its defaults
  best         Muon with the switches and schedule the demo-shape runs favoured (see RECIPES), its Muon rate swept

``--lrs RECIPE=v1,v2,…`` sweeps a recipe's rate key (``optim.lr`` for AdamW recipes, ``optim.muon_lr`` for Muon
ones) at N steps on the first seed and keeps the value that ends lowest; every AdamW comparison should be against
AdamW swept with the same effort. ``key=value`` arguments are passed to every run.

Each run is an ``lm-train`` subprocess (``python -m cs336_lm.cli.train``) with ``train.threads`` fixed
(``--threads``, default 1): a process per run keeps torch's thread pool, allocator and memory of one run out of the
next, and lets ``--jobs`` runs share the machine's cores side by side. The wall time is the run's own training
time (``wall_time_s`` of metrics.jsonl, less the intermediate evaluations), not its start-up; with ``--jobs 2`` on
two cores every run shares the machine with one other, so compare wall times within one invocation. Finished runs
are kept under ``--work-dir`` (keyed by their resolved config) and reused, so an interrupted benchmark continues.

    python scripts/bench_recipe.py --jobs 2 --json bench-results/recipe.json --plot bench-results/recipe.png
    python scripts/bench_recipe.py --recipes adamw,muon --references adamw --seeds 2 --ladder 0.6,0.8,1.0
    python scripts/bench_recipe.py --quick --work-dir /tmp/recipe-quick
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cs336_lm.config import load_config, to_dict  # noqa: E402
from cs336_lm.training.metrics import read_metrics  # noqa: E402

RECIPES: dict[str, tuple[str, list[str]]] = {
    "adamw": ("optim.lr", ["optim.lr=3e-3"]),
    "adamw-tuned": ("optim.lr", ["optim.lr=1e-2"]),
    "muon": ("optim.muon_lr", ["optim.name=muon"]),
    "best": (
        "optim.muon_lr",
        [
            "optim.name=muon",
            "optim.momentum=0.95",
            "optim.lr=1e-2",
            "optim.schedule=wsd",
            "model.ffn=relu2",
            "model.d_ff=512",
        ],
    ),
}
"""name → (the key ``--lrs`` sweeps, its overrides). ``best`` keeps what paired runs at the demo shape supported
(docs/recipes.md): Muon beside an AdamW side at adamw-tuned's rate, the wsd schedule, ReLU² at d_ff = 4·d_model,
and the momentum 0.95 it was measured with (as configs/demo-recipe.yaml; Muon's default is now 0.9)."""
QUICK_SHAPE = [
    "model.d_model=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.d_ff=64",
    "train.eval_batches=2",
    "optim.warmup_iters=2",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="base lm-train config")
    p.add_argument("--recipes", default="adamw,adamw-tuned,muon,best", help=f"of {', '.join(RECIPES)}")
    p.add_argument("--references", default="adamw,adamw-tuned", help="recipes whose N-step loss is a target")
    p.add_argument("--steps", type=int, default=300, help="N: the references' step budget")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context-length", type=int, default=128)
    p.add_argument("--seeds", type=int, default=3, help="train.seed 0 … seeds-1 for every measured point")
    p.add_argument("--ladder", default="0.4,0.5,0.6,0.7,0.8,0.9,1.0", help="step counts to bisect, fractions of N")
    p.add_argument("--lrs", action="append", default=[], metavar="RECIPE=v1,v2", help="a rate sweep (repeatable)")
    p.add_argument("--evals", type=int, default=6, help="evaluations per run (the plot's points); the last at its end")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the one-sided Welch t-test")
    p.add_argument("--jobs", type=int, default=1, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="train.threads of each run")
    p.add_argument("--size-mb", type=float, default=3.0, help="demo corpus size (when --data-dir has none)")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "cs336_lm-bench-recipe")
    p.add_argument("--data-dir", type=Path, help="train.npy, val.npy, tokenizer/ (default: made under --work-dir)")
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny model and corpus, 1 seed, 2 recipes")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--plot", help="write a PNG of validation loss against tokens to this file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")
    if p.parse_known_args(argv)[0].quick:  # smaller defaults; flags given still win
        p.set_defaults(recipes="adamw,muon", references="adamw", steps=6, seeds=1, ladder="0.5,1.0", batch_size=4,
                       context_length=32, size_mb=0.15, vocab_size=300, evals=2)  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.overrides = QUICK_SHAPE + args.overrides
    args.recipes = [r for r in args.recipes.split(",") if r]
    args.references = [r for r in args.references.split(",") if r]
    for name in {*args.recipes, *args.references} - set(RECIPES):
        p.error(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    args.recipes += [r for r in args.references if r not in args.recipes]
    args.sweeps = {}
    for item in args.lrs:
        name, _, values = item.partition("=")
        if name not in RECIPES or not values:
            p.error(f"--lrs wants RECIPE=v1,v2,… with a recipe of {', '.join(RECIPES)}; got {item!r}")
        args.sweeps[name] = [float(v) for v in values.split(",")]
    return args


# ---- data -------------------------------------------------------------------------------------------------------


def run_cli(module: str, cli_args: list[str], log: Path | None = None, env: dict | None = None) -> None:
    """``python -m cs336_lm.cli.<module> ARGS`` (the console script's code); its output goes to ``log`` if given."""
    cmd = [sys.executable, "-m", f"cs336_lm.cli.{module}", *cli_args]
    env = {**(env or os.environ), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(log or os.devnull, "w", encoding="utf-8") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False, cwd=REPO)
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8")[-2000:] if log else ""
        raise RuntimeError(f"{' '.join(cmd[2:5])}… failed with status {done.returncode}\n{tail}")


def prepare_data(args: argparse.Namespace) -> Path:
    """The demo corpus, tokenizer and token files, as scripts/demo.py makes them, written once and kept."""
    data = args.data_dir or args.work_dir / f"data-{args.size_mb:g}mb-v{args.vocab_size}"
    if (data / "val.npy").exists():
        return data
    data.mkdir(parents=True, exist_ok=True)
    print(f"writing the demo corpus ({args.size_mb:g} MB), tokenizer and token files into {data}", flush=True)
    run_cli("demo_corpus", ["--size-mb", str(args.size_mb), "--out", str(data), "--quiet"])
    run_cli("train_bpe", [str(data / "train.txt"), "--vocab-size", str(args.vocab_size),
                          "--special-token", "<|endoftext|>", "--out", str(data / "tokenizer")])  # fmt: skip
    for split, npy in (("train", "train.npy"), ("valid", "val.npy")):
        run_cli("tokenize", ["--tokenizer", str(data / "tokenizer"), str(data / f"{split}.txt"), "--out",
                             str(data / f"{npy}.tmp.npy")])  # fmt: skip
        (data / f"{npy}.tmp.npy").rename(data / npy)  # val.npy last: its presence says the data is whole
    return data


# ---- runs -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One finished training run: its final validation loss, training seconds and (tokens, val loss) points."""

    recipe: str
    lr: float | None
    steps: int
    seed: int
    val_loss: float
    train_s: float
    curve: list[tuple[int, float]]


def summarize(metrics: Path, steps: int) -> tuple[float, float, list[tuple[int, float]]]:
    """Final val loss, training seconds (the last step's ``wall_time_s`` less each evaluation before it, timed as
    its val record's ``wall_time_s`` minus the train record's of the same step) and the validation curve."""
    records = read_metrics(metrics)
    train = {r["step"]: r["wall_time_s"] for r in records if "loss" in r}
    vals = [r for r in records if "val_loss" in r]
    evals_s = sum(v["wall_time_s"] - train[v["step"]] for v in vals if v["step"] < steps and v["step"] in train)
    final = vals[-1]
    if final["step"] != steps:
        raise RuntimeError(f"{metrics} ends at step {final['step']}, not {steps}")
    return final["val_loss"], train[steps] - evals_s, [(v["tokens"], v["val_loss"]) for v in vals]


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT.lock`` (holding this process's id) while the run in ``out`` is checked or trained, so two
    benchmarks sharing a ``--work-dir`` never train into one directory; a lock whose process is gone is taken over."""
    lock = out.parent / f"{out.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                time.sleep(2)  # another benchmark trains it: wait for its result
            except (ProcessLookupError, ValueError, FileNotFoundError):
                lock.unlink(missing_ok=True)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


class Bench:
    """Runs recipes (each distinct resolved config once, kept under ``work_dir/runs``) and holds their results."""

    def __init__(self, args: argparse.Namespace, data: Path):
        self.args = args
        self.base = [
            f"data.train_path={data / 'train.npy'}", f"data.val_path={data / 'val.npy'}",
            f"data.tokenizer_dir={data / 'tokenizer'}", f"model.vocab_size={args.vocab_size}",
            f"model.context_length={args.context_length}", f"train.batch_size={args.batch_size}",
            f"train.threads={args.threads}", "train.ckpt_every=0", "train.keep_last=1", *args.overrides,
        ]  # fmt: skip
        self.lrs: dict[str, float | None] = {}  # the rate each recipe runs at (None: its overrides' own)
        self.pool = ThreadPoolExecutor(max_workers=args.jobs)
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def overrides(self, recipe: str, lr: float | None, steps: int, seed: int) -> list[str]:
        key, own = RECIPES[recipe]
        extra = [f"{key}={lr:g}"] if lr is not None else []
        warmup = load_config(self.args.config, [*self.base, *own, *extra]).optim.warmup_iters
        every = max(1, steps // self.args.evals)
        return [*self.base, *own, *extra, f"train.max_steps={steps}", f"train.seed={seed}",
                f"optim.warmup_iters={round(warmup * steps / self.args.steps)}",
                f"train.eval_every={every}", f"train.log_every={every}"]  # fmt: skip

    def run(self, recipe: str, lr: float | None, steps: int, seed: int) -> Future:
        """The run's future (started on the pool unless the same config ran or runs already)."""
        overrides = self.overrides(recipe, lr, steps, seed)
        resolved = to_dict(load_config(self.args.config, [*overrides, "train.out_dir=x"]))
        key = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]
        with self.lock:
            if key not in self.futures:
                runs = self.args.work_dir / "runs"  # a finished run of the same config under another recipe's name
                done = [d for d in runs.glob(f"*-{key}") if (d / "result.json").exists()]
                out = done[0] if done else runs / f"{recipe}-k{steps}-s{seed}-{key}"
                self.futures[key] = self.pool.submit(self._train, out, overrides, (recipe, lr, steps, seed))
            return self.futures[key]

    def _train(self, out: Path, overrides: list[str], what: tuple) -> Run:
        done = out / "result.json"
        with run_lock(out):
            if not done.exists():
                self._launch(out, overrides, what[2])
        r = json.loads(done.read_text(encoding="utf-8"))
        run = Run(*what, r["val_loss"], r["train_s"], [tuple(p) for p in r["curve"]])
        lr = f" {RECIPES[run.recipe][0]}={run.lr:g}" if run.lr is not None else ""
        print(f"  {run.recipe}{lr} {run.steps} steps seed {run.seed}: val {run.val_loss:.4f}, "
              f"{run.train_s:.1f} s", flush=True)  # fmt: skip
        return run

    def _launch(self, out: Path, overrides: list[str], steps: int) -> None:
        """Train one run into ``out`` as an lm-train process and write its ``result.json``."""
        if out.exists():  # an interrupted earlier attempt: start it again
            shutil.rmtree(out)
        out.mkdir(parents=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.args.threads)}
        run_cli("train", ["--config", self.args.config, *overrides, f"train.out_dir={out}"], out / "log.txt", env)
        val, seconds, curve = summarize(out / "metrics.jsonl", steps)
        for ckpt in (out / "checkpoints").glob("*"):
            ckpt.unlink()  # the benchmark needs the metrics only
        result = {"val_loss": val, "train_s": seconds, "curve": curve}
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")

    def lr_label(self, recipe: str) -> str:
        """The recipe's peak rates, e.g. ``3e-3`` (AdamW) or ``muon 0.01, adamw 3e-3``; a swept one marked."""
        key, own = RECIPES[recipe]
        lr = self.lrs.get(recipe)
        o = load_config(self.args.config, [*self.base, *own, *([f"{key}={lr:g}"] if lr is not None else [])]).optim
        swept = " (swept)" if recipe in self.args.sweeps else ""
        if o.name != "muon":
            return f"{o.lr:g}{swept}"
        return f"muon {o.muon_lr if o.muon_lr is not None else o.lr:g}{swept}, adamw {o.lr:g}"

    def seeds(self, recipe: str, steps: int) -> list[Run]:
        """The recipe at ``steps`` over every seed (side by side up to ``--jobs``)."""
        futures = [self.run(recipe, self.lrs.get(recipe), steps, s) for s in range(self.args.seeds)]
        return [f.result() for f in futures]

    def sweep(self, recipe: str) -> dict[float, float]:
        """Each ``--lrs`` value at N steps on seed 0; the recipe keeps the one that ends lowest."""
        runs = {lr: self.run(recipe, lr, self.args.steps, 0) for lr in self.args.sweeps[recipe]}
        losses = {lr: run.result().val_loss for lr, run in runs.items()}  # a run shared with another recipe: its name
        self.lrs[recipe] = min(losses, key=losses.get)
        return losses


# ---- statistics and the search ---------------------------------------------------------------------------------


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def welch_p(a: list[float], b: list[float]) -> float | None:
    """One-sided p of mean(a) < mean(b) by Welch's t-test (scipy), else the normal approximation; None without
    two values on each side or without any spread."""
    if len(a) < 2 or len(b) < 2:
        return None
    try:
        from scipy.stats import ttest_ind

        p = float(ttest_ind(a, b, equal_var=False, alternative="less").pvalue)
        return None if math.isnan(p) else p
    except ImportError:
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        return None if se == 0 else 0.5 * math.erfc((statistics.fmean(b) - statistics.fmean(a)) / se / math.sqrt(2))


def fewest_steps(ladder: list[int], passes) -> int | None:
    """Bisect the ascending ``ladder`` for its first rung where ``passes(steps)`` holds (taken to hold from there up);
    None when not even the last rung passes. ``[60, 90, 120, 150]`` with passes = (≥ 90) → 90 (tries 120, 90, 60)."""
    lo, hi = 0, len(ladder)  # the answer's index lies in [lo, hi]; hi = len means none
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(ladder[mid]):
            hi = mid
        else:
            lo = mid + 1
    return ladder[lo] if lo < len(ladder) else None


def compare(bench: Bench, recipe: str, ref: list[Run], ladder: list[int], alpha: float) -> dict:
    """The recipe's fewest steps to the reference's mean loss L (and to p < alpha below it), with the figures."""
    target = statistics.fmean(r.val_loss for r in ref)
    losses = [r.val_loss for r in ref]
    if (
        recipe in bench.args.references
        and statistics.fmean(r.val_loss for r in bench.seeds(recipe, ladder[-1])) > target
    ):
        ladder = ladder[-1:]  # its own N-step runs (at hand) miss L: no need to bisect below them
    steps = fewest_steps(ladder, lambda k: statistics.fmean(r.val_loss for r in bench.seeds(recipe, k)) <= target)

    def significant(k: int) -> bool:
        p = welch_p([r.val_loss for r in bench.seeds(recipe, k)], losses)
        return p is not None and p < alpha

    strict = fewest_steps([k for k in ladder if k >= steps], significant) if steps is not None else None
    row = {"steps": steps, "steps_significant": strict, "target": target}
    shown = steps if steps is not None else ladder[-1]
    runs = bench.seeds(recipe, shown)
    vals = [r.val_loss for r in runs]
    p = welch_p(vals, losses)
    (mean, sd), ref_s = mean_sd(vals), statistics.fmean(r.train_s for r in ref)
    row |= {"shown_steps": shown, "val_mean": mean, "val_sd": sd, "val_losses": vals, "p": p,
            "significant": steps is not None and p is not None and p < alpha,
            "train_s": statistics.fmean(r.train_s for r in runs), "ref_train_s": ref_s}  # fmt: skip
    row["steps_ratio"] = steps / bench.args.steps if steps is not None else None
    row["time_ratio"] = row["train_s"] / ref_s if steps is not None else None
    return row


# ---- report -----------------------------------------------------------------------------------------------------


def print_table(ref: str, rows: dict, bench: Bench, alpha: float) -> None:
    if not rows:  # a reference compared with no recipe
        return
    n = bench.args.steps
    first = next(iter(rows.values()))
    print(f"\nreference {ref} ({bench.lr_label(ref)}): {n} steps, L = {first['target']:.4f}")
    print(f"| recipe | lr | steps to L | ×N | train s | ×ref | val loss (mean ± sd) | p | steps, p<{alpha:g} |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    for name, r in rows.items():
        reached = r["steps"] is not None
        steps = f"{r['steps']}" if reached else f"> {r['shown_steps']}"
        ratio = f"{r['steps_ratio']:.2f}" if reached else "–"
        time_ratio = f"{r['time_ratio']:.2f}" if reached else "–"
        p = f"{r['p']:.3f}" if r["p"] is not None else "–"
        p += " *" if r["significant"] else ""
        strict = r["steps_significant"] if r["steps_significant"] is not None else "–"
        print(f"| {name} | {bench.lr_label(name)} | {steps} | {ratio} | {r['train_s']:.1f} | {time_ratio} | "
              f"{r['val_mean']:.4f} ± {r['val_sd']:.4f} | {p} | {strict} |")  # fmt: skip
    print(f"(* significant: the one-sided Welch t-test of the recipe's {bench.args.seeds} seeds against the "
          f"reference's gives p < {alpha:g}; times are training seconds, mean over the seeds)")  # fmt: skip


def plot(path: str, bench: Bench, references: dict, results: dict) -> None:
    """Validation loss against tokens: each reference's N-step runs and each recipe's runs at its reported steps
    (the mean over the seeds), with each target L dashed; styled as ``lm-plot``."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    first, tops, lows = next(iter(results.values())), [], []
    for i, name in enumerate(bench.args.recipes):
        steps = bench.args.steps if name in references else first[name]["shown_steps"]
        runs = bench.seeds(name, steps)
        tokens = [t for t, _ in runs[0].curve]
        loss = [statistics.fmean(r.curve[j][1] for r in runs) for j in range(len(tokens))]
        ax.plot(tokens, loss, ls="--", marker="o", ms=3, color=f"C{i}", label=f"{name} ({steps} steps)")
        tops, lows = [*tops, loss[min(1, len(loss) - 1)]], [*lows, min(loss)]
    for j, (ref, runs) in enumerate(references.items()):
        target = statistics.fmean(r.val_loss for r in runs)
        ax.axhline(target, color="0.4", lw=0.8, ls=(0, (2 + 2 * j, 2)), label=f"L of {ref} = {target:.3f}")
    span = max(tops) - min(lows)  # from the second evaluation down: the first one's loss would flatten the rest
    ax.set_ylim(min(lows) - 0.05 * span, max(tops) + 0.05 * span)
    ax.set(xlabel="tokens seen", ylabel="validation loss (nats)", title="validation loss vs tokens")
    ax.xaxis.set_major_formatter(ticker.EngFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, prepare_data(args))
    ladder = sorted({max(1, round(float(f) * args.steps)) for f in args.ladder.split(",")})
    sweeps = {}
    for name in args.sweeps:
        if name in args.recipes:
            print(f"sweep {name}: {RECIPES[name][0]} over {args.sweeps[name]}, {args.steps} steps, seed 0", flush=True)
            sweeps[name] = bench.sweep(name)
    print(f"references at {args.steps} steps, {args.seeds} seeds: {', '.join(args.references)}", flush=True)
    references = {ref: bench.seeds(ref, args.steps) for ref in args.references}
    pairs = [(ref, name) for ref in references for name in args.recipes if name != ref]
    with ThreadPoolExecutor(max_workers=len(pairs) or 1) as searches:  # the bisections side by side
        rows = {
            pair: searches.submit(compare, bench, pair[1], references[pair[0]], ladder, args.alpha) for pair in pairs
        }
        results = {ref: {name: rows[ref, name].result() for r, name in pairs if r == ref} for ref in references}
    for ref, rows in results.items():
        print_table(ref, rows, bench, args.alpha)
    if args.plot:
        plot(args.plot, bench, references, results)
    if args.json:
        write_json(args, argv, bench, sweeps, references, results)
    bench.pool.shutdown()
    return 0


def write_json(args, argv, bench: Bench, sweeps: dict, references: dict, results: dict) -> None:
    runs = [f.result() for f in bench.futures.values() if f.done() and f.exception() is None]
    record = {
        "benchmark": "recipe",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or ''}".rstrip(", "),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "plot", "lrs")},
        "recipes": {
            n: {"lr_key": RECIPES[n][0], "lr": bench.lrs.get(n), "overrides": RECIPES[n][1]} for n in args.recipes
        },
        "sweeps": {n: {f"{lr:g}": v for lr, v in s.items()} for n, s in sweeps.items()},
        "references": {
            n: {
                "val_losses": [r.val_loss for r in rs],
                "target": statistics.fmean(r.val_loss for r in rs),
                "train_s": [r.train_s for r in rs],
            }
            for n, rs in references.items()
        },
        "results": results,
        "runs": [vars(r) for r in runs],
    }
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main())
