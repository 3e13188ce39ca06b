"""``lm-tokenize`` throughput with 1 and 2 workers, beside tiktoken's GPT-2 encoding single-threaded.

Each repeat runs, interleaved: tiktoken (read the file, encode, ``np.save`` the ids, in this process), then
``python -m cs336_lm.cli.tokenize`` with ``--num-workers 1`` and ``2`` as subprocesses on the same file with
GPT-2's tokenizer (saved from the shared fixtures into a temporary directory). Two figures per command:
``command`` is the wall time of the whole process (interpreter start and imports included), ``reported`` the
MB/s the command prints for its own work. Medians over repeats; ratios against tiktoken.

    python scripts/bench_tokenize.py [--input PATH] [--repeats 3] [--mb 0] [--quick] [--json out.json]
"""

import argparse
import collections
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tokenizer import DEFAULT_INPUT, gpt2_tokenizers, load_text

WORKERS = (1, 2)


def run_cli(tok_dir: Path, src: Path, out: Path, workers: int) -> tuple[float, float]:
    """(wall seconds of the whole command, MB/s it reports)."""
    cmd = [sys.executable, "-m", "cs336_lm.cli.tokenize", "--tokenizer", str(tok_dir), str(src)]
    cmd += ["--out", str(out), "--num-workers", str(workers)]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"lm-tokenize failed: {result.stderr.strip()}")
    reported = re.search(r"([0-9.]+) MB/s", result.stdout)
    return wall, float(reported.group(1)) if reported else float("nan")


def run_tiktoken(ref, src: Path, out: Path) -> float:
    start = time.perf_counter()
    ids = ref.encode(src.read_text(encoding="utf-8"), allowed_special="all")
    np.save(out, np.asarray(ids, dtype=np.uint16), allow_pickle=False)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--input", type=Path, default=None, help=f"text file (default {DEFAULT_INPUT})")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--mb", type=float, default=0.0, help="use only the first MB of the text (default 0: all)")
    p.add_argument("--quick", action="store_true", help="4 MB, one repeat")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.mb = 1, args.mb or 4.0
    text, source = load_text(args.input, args.mb)
    mb = len(text.encode("utf-8")) / 1e6
    ours, ref = gpt2_tokenizers()
    times = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "input.txt"
        src.write_text(text, encoding="utf-8")
        ours.save(tmp / "tok")
        for _ in range(args.repeats):
            times["tiktoken"].append(run_tiktoken(ref, src, tmp / "ref.npy"))
            for w in WORKERS:
                wall, reported = run_cli(tmp / "tok", src, tmp / f"out{w}.npy", w)
                times[f"lm-tokenize {w} worker(s), command"].append(wall)
                times[f"lm-tokenize {w} worker(s), reported"].append(mb / reported)
        same = all(np.array_equal(np.load(tmp / f"out{w}.npy"), np.load(tmp / "ref.npy")) for w in WORKERS)
    print(f"input: {source}, {mb:.1f} MB; {args.repeats} repeat(s); token files identical to tiktoken: {same}")
    base = statistics.median(times["tiktoken"])
    rows = {}
    print(f"{'':36s} {'median s':>9s} {'MB/s':>8s} {'× tiktoken':>11s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows[name] = {"seconds": ts, "median_s": med, "mb_per_s": mb / med, "ratio_vs_tiktoken": base / med}
        print(f"{name:36s} {med:9.3f} {mb / med:8.2f} {base / med:11.2f}")
    if args.json:
        result = {"benchmark": "tokenize", "input": source, "mb": mb, "repeats": args.repeats, "identical": same}
        args.json.write_text(json.dumps(result | {"results": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
