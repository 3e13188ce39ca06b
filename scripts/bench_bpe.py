"""Benchmark BPE training: our ``train_bpe`` against HuggingFace ``tokenizers``' BPE trainer.

Both get the same file, the same special token and vocabulary size, and the same number of workers (our
processes, HF's rayon threads). HF runs ByteLevel pre-tokenization (the GPT-2 regex) on documents split on
the special token and fed through ``train_from_iterator``, so it never sees the special token as text. Each
run is a fresh subprocess, so each has its own peak RSS; runs of ours and HF's alternate, and medians and
the ratio ours/HF are reported, with our pre-tokenize and merge phases.

    python scripts/bench_bpe.py            # corpus.en @ 500, 30 MB corpus @ 10K and 32K
    python scripts/bench_bpe.py --quick    # corpus.en only
    bash ../shared/bench/make_corpus.sh    # builds the 30 MB corpus at /tmp/bench-corpus/big.txt
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("CS336_FIXTURES", REPO.parent / "shared" / "fixtures"))
BIG_CORPUS = Path(os.environ.get("TMPDIR", "/tmp")) / "bench-corpus" / "big.txt"
EOT = "<|endoftext|>"


def peak_rss_mib() -> dict[str, float]:
    """Peak RSS of this run (and of its largest worker process) and the CPU seconds of all its threads and workers.

    CPU seconds are the steadier figure on a busy machine: they count work done, not time spent waiting.
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return {"peak_rss_mib": own.ru_maxrss / 1024, "peak_child_rss_mib": children.ru_maxrss / 1024, "cpu_s": cpu}


def run_ours(path: str, vocab_size: int, workers: int) -> dict:
    from cs336_lm.tokenizer import train_bpe

    timings: dict[str, float] = {}
    start = time.perf_counter()
    vocab, _ = train_bpe(path, vocab_size, [EOT], num_workers=workers, progress=False, timings=timings)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "vocab": len(vocab), **timings, **peak_rss_mib()}


def run_hf(path: str, vocab_size: int, workers: int) -> dict:
    # rayon reads RAYON_NUM_THREADS when its pool starts; the parent sets it in our environment
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    start = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def documents():
        with open(path, encoding="utf-8") as f:
            yield from f.read().split(EOT)

    tokenizer.train_from_iterator(documents(), trainer)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "vocab": tokenizer.get_vocab_size(), **peak_rss_mib()}


def run_once(impl: str, path: Path, vocab_size: int, workers: int) -> dict:
    """One run of ``impl`` in a fresh interpreter; returns its JSON report."""
    env = {**os.environ, "RAYON_NUM_THREADS": str(workers), "TOKENIZERS_PARALLELISM": "true"}
    cmd = [sys.executable, __file__, "--child", impl, str(path), str(vocab_size), str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_case(name: str, path: Path, vocab_size: int, workers: int, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {"ours": [], "hf": []}
    for r in range(repeats):
        order = ["ours", "hf"] if r % 2 == 0 else ["hf", "ours"]
        for impl in order:
            runs[impl].append(run_once(impl, path, vocab_size, workers))

    def median(impl: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[impl])

    result = {
        "case": name,
        "file": str(path),
        "file_mb": path.stat().st_size / 1e6,
        "vocab_size": vocab_size,
        "workers": workers,
        "repeats": repeats,
        "ours_s": median("ours", "seconds"),
        "ours_pretokenize_s": median("ours", "pretokenize"),
        "ours_merge_s": median("ours", "merge"),
        "hf_s": median("hf", "seconds"),
        "ours_cpu_s": median("ours", "cpu_s"),
        "hf_cpu_s": median("hf", "cpu_s"),
        "ours_peak_rss_mib": median("ours", "peak_rss_mib"),
        "ours_worker_peak_rss_mib": median("ours", "peak_child_rss_mib"),
        "hf_peak_rss_mib": median("hf", "peak_rss_mib"),
        "ours_runs_s": [run["seconds"] for run in runs["ours"]],
        "hf_runs_s": [run["seconds"] for run in runs["hf"]],
    }
    result["ratio"] = result["ours_s"] / result["hf_s"]
    result["cpu_ratio"] = result["ours_cpu_s"] / result["hf_cpu_s"]
    return result


def print_row(res: dict) -> None:
    print(
        f"{res['case']:<22} ours {res['ours_s']:7.3f} s (pre-tokenize {res['ours_pretokenize_s']:.3f} + merge "
        f"{res['ours_merge_s']:.3f})  HF {res['hf_s']:7.3f} s  ratio {res['ratio']:.2f}  |  CPU ours "
        f"{res['ours_cpu_s']:.2f} s HF {res['hf_cpu_s']:.2f} s ratio {res['cpu_ratio']:.2f}  |  peak RSS ours "
        f"{res['ours_peak_rss_mib']:.0f} MiB (+worker {res['ours_worker_peak_rss_mib']:.0f}) HF "
        f"{res['hf_peak_rss_mib']:.0f} MiB",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only corpus.en @ 500")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--corpus", type=Path, default=BIG_CORPUS, help=f"the 30 MB corpus (default {BIG_CORPUS})")
    parser.add_argument("--workers", type=int, default=2, help="our processes / HF threads (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side (default 5 small, 3 large)")
    parser.add_argument("--child", nargs=4, metavar=("IMPL", "PATH", "VOCAB", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, path, vocab_size, workers = args.child
        run = run_ours if impl == "ours" else run_hf
        print(json.dumps(run(path, int(vocab_size), int(workers))))
        return 0

    cases = [("corpus.en @ 500", FIXTURES / "corpus.en", 500, args.repeats or 5)]
    if not args.quick:
        if args.corpus.is_file():
            cases += [(f"30 MB @ {v // 1000}K", args.corpus, v, args.repeats or 3) for v in (10_000, 32_000)]
        else:
            print(f"skipping the large corpus: {args.corpus} not found (run ../shared/bench/make_corpus.sh)")
    results = []
    for name, path, vocab_size, repeats in cases:
        if not path.is_file():
            print(f"skipping {name}: {path} not found")
            continue
        results.append(bench_case(name, path, vocab_size, args.workers, repeats))
        print_row(results[-1])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
