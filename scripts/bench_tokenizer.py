"""Encoding speed: our ``Tokenizer`` vs tiktoken's GPT-2 encoding on the same text, single-threaded, and our
parallel file path (``tokenize_files``, 2 workers) vs tiktoken single-threaded; then ``tokenize_files`` with the
tiktoken backend (``lm-tokenize --backend tiktoken``: the exactness check, the encoding, the file written) on 1
and 2 workers, whose target is a throughput *per worker* of at least 0.9× tiktoken's own single-threaded encode.
The exactness check runs once per vocabulary and is then remembered (``cached_mismatch``, in a cache directory
private to this run); the row marked ``first use`` starts from an empty cache and so includes the check.

Both tokenizers use GPT-2's own vocab.json/merges.txt from the shared fixtures (tiktoken's ``Encoding`` is built
offline from them). The text is the ~30 MB English corpus of ``../shared/bench/make_corpus.sh``
(``/tmp/bench-corpus/big.txt``; ``--input`` chooses another file). Repeats are interleaved (tiktoken, then each
of ours, then again) and medians reported, since the machine is shared. ``encode (cold)`` starts every repeat
with an empty pre-token cache; ``encode (warm)`` encodes the same text again with the cache filled.

    python scripts/bench_tokenizer.py [--input PATH] [--repeats 3] [--mb 0] [--quick] [--profile] [--json out.json]
"""

import argparse
import collections
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import tiktoken

from cs336_lm.data.prepare import tokenize_files
from cs336_lm.fileio import CACHE_ENV
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.tokenizer.files import unicode_to_bytes
from cs336_lm.tokenizer.pretokenize import GPT2_PATTERN, PRETOKEN_RE

EOT = "<|endoftext|>"
REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("CS336_FIXTURES", REPO.parent / "shared" / "fixtures"))
DEFAULT_INPUT = Path(tempfile.gettempdir()) / "bench-corpus" / "big.txt"
TARGETS = {"encode (cold)": 0.25, "encode_iterable": 0.25, "tokenize_files, 2 workers": 0.5}
# rows measured per worker: the ratio to tiktoken divided by the number of workers
FIRST_USE = "backend tiktoken, 2w, first use"
WORKERS = {
    "tokenize_files, 2 workers": 2,
    "backend tiktoken, 1 worker": 1,
    "backend tiktoken, 2 workers": 2,
    FIRST_USE: 2,
}
PER_WORKER_TARGETS = {"backend tiktoken, 1 worker": 0.9, "backend tiktoken, 2 workers": 0.9}


def wait_until_complete(path: Path, timeout_s: float = 600.0, settle_s: float = 3.0) -> None:
    """Wait while ``path`` is still growing (``make_corpus.sh`` writes it in place)."""
    deadline = time.monotonic() + timeout_s
    size = -1
    while time.monotonic() < deadline:
        now = path.stat().st_size
        if now == size and time.time() - path.stat().st_mtime > settle_s:
            return
        if size >= 0:
            print(f"waiting for {path} to be complete ({now / 1e6:.1f} MB so far)", file=sys.stderr)
        size = now
        time.sleep(settle_s)
    raise SystemExit(f"{path} kept changing for {timeout_s:.0f} s; is make_corpus.sh stuck?")


def load_text(path: Path | None, limit_mb: float) -> tuple[str, str]:
    """The benchmark text (cut to ``limit_mb`` when positive, at a character boundary) and where it came from."""
    if path is None:
        path = DEFAULT_INPUT
        if not path.is_file():
            fallback = FIXTURES / "corpus.en"
            print(
                f"note: {path} not found (build it with ../shared/bench/make_corpus.sh); "
                f"falling back to {fallback} repeated to ~30 MB",
                file=sys.stderr,
            )
            text = fallback.read_text(encoding="utf-8")
            text = (text + EOT) * max(1, int(30e6 // len(text.encode())))
            return cut(text, limit_mb), f"{fallback} (repeated)"
    if not path.is_file():
        raise SystemExit(f"input {path} not found")
    wait_until_complete(path)
    return cut(path.read_text(encoding="utf-8"), limit_mb), str(path)


def cut(text: str, limit_mb: float) -> str:
    if limit_mb <= 0:
        return text
    return text.encode("utf-8")[: int(limit_mb * 1e6)].decode("utf-8", errors="ignore")


def gpt2_tokenizers() -> tuple[Tokenizer, tiktoken.Encoding]:
    """Ours and tiktoken's GPT-2 encoding, both from the fixture files (no download)."""
    vocab_path, merges_path = FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        raise SystemExit(f"GPT-2 tokenizer files not found in {FIXTURES} (set CS336_FIXTURES)")
    ours = Tokenizer.from_files(vocab_path, merges_path, [EOT])
    to_byte = unicode_to_bytes()
    with open(vocab_path, encoding="utf-8") as f:
        ranks = {bytes(to_byte[c] for c in text): i for text, i in json.load(f).items() if text != EOT}
    ref = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256})
    return ours, ref


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of the worker processes it waited for)."""
    cpu = lambda: time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    start, start_cpu = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - start, cpu() - start_cpu


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def parallel_headroom(n: int = 5_000_000) -> float:
    """How much faster two processes finish two equal pure-Python loops than one process (2.0 on an idle
    2-core machine). Near 1.0 means the cores are busy with other work and no parallel speed-up can show."""
    serial = timed(lambda: (_burn(n), _burn(n)))[0]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_burn, [1, 1])  # start the workers before timing
        parallel = timed(lambda: pool.map(_burn, [n, n]))[0]
    return serial / parallel


def run(text: str, repeats: int, workdir: Path) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per repeat for each contestant, interleaved."""
    ours, ref = gpt2_tokenizers()
    src = workdir / "input.txt"
    src.write_text(text, encoding="utf-8")
    lines = text.splitlines(keepends=True)
    times = collections.defaultdict(list)
    for _ in range(repeats):
        times["tiktoken encode"].append(timed(lambda: ref.encode(text, allowed_special="all")))
        fresh = Tokenizer(ours.vocab, ours.merges, ours.special_tokens)
        times["encode (cold)"].append(timed(lambda t=fresh: t.encode(text)))
        times["encode (warm)"].append(timed(lambda t=fresh: t.encode(text)))
        fresh = Tokenizer(ours.vocab, ours.merges, ours.special_tokens)
        times["encode_iterable"].append(timed(lambda t=fresh: collections.deque(t.encode_iterable(lines), maxlen=0)))
        fresh = Tokenizer(ours.vocab, ours.merges, ours.special_tokens)
        times["tokenize_files, 2 workers"].append(
            timed(
                lambda t=fresh: tokenize_files(
                    t, [src], workdir / "out.npy", num_workers=2, progress=False, backend="ours"
                )
            )
        )
        for workers in (1, 2):
            fresh = Tokenizer(ours.vocab, ours.merges, ours.special_tokens)
            name = f"backend tiktoken, {workers} worker{'s' if workers > 1 else ''}"
            times[name].append(
                timed(
                    lambda t=fresh, n=workers: tokenize_files(
                        t, [src], workdir / "fast.npy", num_workers=n, progress=False, backend="tiktoken"
                    )
                )
            )
        fresh = Tokenizer(ours.vocab, ours.merges, ours.special_tokens)
        with tempfile.TemporaryDirectory() as empty_cache:
            os.environ[CACHE_ENV], kept = empty_cache, os.environ[CACHE_ENV]
            times[FIRST_USE].append(
                timed(
                    lambda t=fresh: tokenize_files(
                        t, [src], workdir / "fast.npy", num_workers=2, progress=False, backend="tiktoken"
                    )
                )
            )
            os.environ[CACHE_ENV] = kept
    return times


def report(times: dict[str, list[tuple[float, float]]], mb: float) -> dict:
    """Median wall and CPU seconds, MB/s and the ratio to tiktoken (>1: faster), printed and returned.

    On a shared machine the CPU-time ratio of the single-threaded rows is the steadier figure; the parallel row's
    point is wall time (its CPU time adds both workers).
    """
    ref_wall = statistics.median(w for w, _ in times["tiktoken encode"])
    ref_cpu = statistics.median(c for _, c in times["tiktoken encode"])
    rows = {}
    print(
        f"{'':31s} {'wall s':>7s} {'MB/s':>6s} {'× tiktoken':>10s} {'per worker':>10s} {'cpu s':>7s} {'× (cpu)':>8s} "
        f"{'target':>9s}"
    )
    for name, ts in times.items():
        wall, cpu = statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)
        ratio, cpu_ratio = ref_wall / wall, ref_cpu / cpu
        per_worker = ratio / WORKERS.get(name, 1)
        target, measured = TARGETS.get(name), ratio
        if name in PER_WORKER_TARGETS:
            target, measured = PER_WORKER_TARGETS[name], per_worker
        rows[name] = {
            "wall_s": [w for w, _ in ts],
            "cpu_s": [c for _, c in ts],
            "median_wall_s": wall,
            "median_cpu_s": cpu,
            "mb_per_s": mb / wall,
            "ratio_vs_tiktoken": ratio,
            "ratio_per_worker": per_worker,
            "cpu_ratio_vs_tiktoken": cpu_ratio,
        }
        mark = "" if target is None else f"≥{target:.2f}" + (" ok" if measured >= target else " MISS")
        print(
            f"{name:31s} {wall:7.2f} {mb / wall:6.2f} {ratio:10.2f} {per_worker:10.2f} {cpu:7.2f} {cpu_ratio:8.2f} "
            f"{mark:>9s}"
        )
    return rows


def breakdown(text: str) -> dict[str, float]:
    """CPU seconds of the parts of a cold ``encode``: the regex, BPE of each distinct pre-token, the rest."""
    tok, _ = gpt2_tokenizers()
    pieces = tok._special_re.split(text)[0::2]  # the ordinary text between special tokens
    start = time.process_time()
    pretokens = [p for piece in pieces for p in PRETOKEN_RE.findall(piece)]
    regex_s = time.process_time() - start
    distinct = set(pretokens)
    start = time.process_time()
    for p in distinct:
        tok._encode_pretoken(p)
    bpe_s = time.process_time() - start
    start = time.process_time()
    tok.encode(text)
    cold_s = time.process_time() - start
    start = time.process_time()
    tok.encode(text)
    warm_s = time.process_time() - start
    parts = {
        "pre-tokens": len(pretokens),
        "distinct pre-tokens": len(distinct),
        "regex findall (cpu s)": regex_s,
        "BPE of distinct pre-tokens (cpu s)": bpe_s,
        "encode cold (cpu s)": cold_s,
        "encode warm (cpu s)": warm_s,
        "cache lookups + list building (cpu s, warm - regex)": warm_s - regex_s,
    }
    for name, value in parts.items():
        print(f"  {name:52s} {value:10.2f}" if isinstance(value, float) else f"  {name:52s} {value:10d}")
    return parts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--input", type=Path, default=None, help=f"text file (default {DEFAULT_INPUT})")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--mb", type=float, default=0.0, help="use only the first MB of the text (default 0: all)")
    p.add_argument("--quick", action="store_true", help="4 MB, one repeat")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--profile", action="store_true", help="also break a cold encode down into its parts")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.mb = 1, args.mb or 4.0
    text, source = load_text(args.input, args.mb)
    mb = len(text.encode("utf-8")) / 1e6
    ours, ref = gpt2_tokenizers()
    same = ours.encode(text[:2_000_000]) == ref.encode(text[:2_000_000], allowed_special="all")
    print(f"input: {source}, {mb:.1f} MB; {args.repeats} repeat(s); ids identical to tiktoken (first 2M chars): {same}")
    headroom = [parallel_headroom()]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")  # remembered verdicts: this run's own
        rows = report(run(text, args.repeats, Path(tmp)), mb)
    headroom.append(parallel_headroom())
    print(f"2-process speed-up of a pure-Python loop here, before/after: {headroom[0]:.2f} / {headroom[1]:.2f}")
    parts = None
    if args.profile:
        print("where a cold encode spends its time:")
        parts = breakdown(text)
    if args.json:
        result = {
            "benchmark": "tokenizer",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
            "input": source,
            "mb": mb,
            "repeats": args.repeats,
            "identical_ids": same,
            "results": rows,
            "profile": parts,
            "parallel_headroom_before_after": headroom,
            "targets": TARGETS,
            "per_worker_targets": PER_WORKER_TARGETS,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
