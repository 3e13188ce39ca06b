"""Throughput and latency of ``lm-serve`` under concurrent streaming clients, beside the engine's offline speed.

The model is ``tiny_run(tmp, "tinystories-17m", context_length=512)`` (random weights) and the requests come
from the engine benchmark's mixed workload (``scripts/engine_workload.py``: token-id prompts of 8–200 tokens,
16–200 new tokens each, greedy, no stop). ``lm-serve`` runs as a subprocess on a free loopback port; this process
is the load generator: ``C`` clients (asyncio, one HTTP/1.1 connection each) each take the next request of the
workload, stream it (``stream: true`` with usage in every chunk, so tokens are counted exactly) and go on until
the workload is done. At concurrency 1 and 8 only the first 8·C requests run, to keep the run short.

Reported per concurrency: generated tokens/s (all tokens / wall time of the whole run), time to first token
(request sent → first text chunk) and time between tokens (the gap before each chunk, spread over the tokens it
carries), p50 and p99. The TTFT of the first wave (every client's first request, all sent at once to an idle
server: at 32 clients, 3,275 prompt tokens that no schedule can compute faster than the model prefills them)
is also reported apart from the steady state's (every later request, sent as an earlier one ends).

At the top concurrency (32) the server runs ``--repeats`` times, each between two runs of
``Engine(model).generate`` on the same requests in this process with the same engine settings and at most 32
running at once, as the clients allow the server (the server process is idle meanwhile); each server run is set
against the mean of the offline runs around it, and the median of those ratios is reported (target: server ≥ 0.9×
offline). One more offline run takes all requests at once (the engine's default ``max_num_seqs``), for scale. The
load average before and after is kept too: on a shared machine the figures move with it.

    python scripts/bench_serve.py                 # 128 requests, concurrency 1, 8, 32
    python scripts/bench_serve.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_workload import Request, mixed_workload, start_server, tiny_run

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.nn import PRESETS
from cs336_lm.run import load_run

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.9


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS), help="the model's shape")
    p.add_argument("--requests", type=int, default=128, help="requests in the workload (concurrency 32 runs them all)")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated numbers of concurrent clients")
    p.add_argument("--max-batch-tokens", type=int, default=512, help="the engine's max_batch_tokens, both ways")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads, both ways (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="server runs at the top concurrency, between offline runs")
    p.add_argument("--quick", action="store_true", help="32 requests, 1 repeat: a smoke run of a minute or two")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.repeats = 32, 1
    return args


# ---- the load generator ---------------------------------------------------------------------------------------


@dataclass
class Trace:
    """One streamed request: when it was sent, when each chunk came and how many tokens it carried."""

    sent: float
    first_wave: bool = False
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (arrival, tokens so far)

    @property
    def tokens(self) -> int:
        return self.chunks[-1][1] if self.chunks else 0

    def ttft(self) -> float:
        return self.chunks[0][0] - self.sent

    def gaps(self) -> list[float]:
        """The time before each token after the first chunk's (a chunk of k tokens gives k gaps of 1/k its wait)."""
        out = []
        for (t0, n0), (t1, n1) in zip(self.chunks, self.chunks[1:], strict=False):
            if n1 > n0:
                out += [(t1 - t0) / (n1 - n0)] * (n1 - n0)
        return out


async def stream_one(reader, writer, host: str, req: Request, first_wave: bool = False) -> Trace:
    body = json.dumps(
        {
            "prompt": req.prompt,
            "max_tokens": req.max_new_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"continuous_usage_stats": True},
        }
    ).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    trace = Trace(time.perf_counter(), first_wave)
    writer.write(head + body)
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"the server answered {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):  # headers
        pass
    while True:  # chunked transfer encoding: size line, data, CRLF
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            return trace
        data = await reader.readexactly(size + 2)
        now = time.perf_counter()
        for line in data.split(b"\n"):
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                if chunk["choices"]:
                    trace.chunks.append((now, chunk["usage"]["completion_tokens"]))


async def load(host: str, port: int, requests: list[Request], concurrency: int) -> tuple[list[Trace], float]:
    pending = list(reversed(requests))
    traces: list[Trace] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            first = True
            while pending:
                traces.append(await stream_one(reader, writer, host, pending.pop(), first))
                first = False
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return traces, time.perf_counter() - start


def summarize(traces: list[Trace], seconds: float) -> dict:
    ttft = sorted(t.ttft() for t in traces)
    later = sorted(t.ttft() for t in traces if not t.first_wave)
    wave = sorted(t.ttft() for t in traces if t.first_wave)
    gaps = sorted(g for t in traces for g in t.gaps())
    tokens = sum(t.tokens for t in traces)
    return {
        "requests": len(traces),
        "tokens": tokens,
        "seconds": seconds,
        "tok_per_s": tokens / seconds,
        "ttft_p50_ms": 1e3 * quantile(ttft, 0.5),
        "ttft_p99_ms": 1e3 * quantile(ttft, 0.99),
        "ttft_first_wave_p50_ms": 1e3 * quantile(wave, 0.5),
        "ttft_first_wave_max_ms": 1e3 * max(wave, default=float("nan")),
        "ttft_later_p50_ms": 1e3 * quantile(later, 0.5),
        "ttft_later_p99_ms": 1e3 * quantile(later, 0.99),
        "itl_p50_ms": 1e3 * quantile(gaps, 0.5),
        "itl_p99_ms": 1e3 * quantile(gaps, 0.99),
    }


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


# ---- the two sides --------------------------------------------------------------------------------------------


def offline(run: Path, requests: list[Request], args: argparse.Namespace, max_num_seqs: int | None = None) -> dict:
    """``Engine.generate`` on the same requests, with the server's engine settings (tokenizer included), at most
    ``max_num_seqs`` running at once (the clients' concurrency; None: the engine's default, all of them)."""
    loaded = load_run(run, "cpu")
    limit = {} if max_num_seqs is None else {"max_num_seqs": max_num_seqs}
    engine = Engine(loaded.model, max_batch_tokens=args.max_batch_tokens, tokenizer=loaded.tokenizer, **limit)
    params = [SamplingParams(max_new_tokens=r.max_new_tokens) for r in requests]
    start = time.perf_counter()
    done = engine.generate([r.prompt for r in requests], params)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.tokens) for c in done)
    return {"requests": len(requests), "tokens": tokens, "seconds": seconds, "tok_per_s": tokens / seconds}


def measure(run: Path, workload: list[Request], levels: list[int], args: argparse.Namespace) -> dict:
    """Every concurrency once; the top one ``--repeats`` times, each between two offline runs."""
    top = max(levels)
    results: dict = {"server": {}, "offline": [], "top_runs": []}
    options = ["--max-batch-tokens", str(args.max_batch_tokens), "--max-queue", "1024"]
    proc, host, port = start_server(run, *options, env={"OMP_NUM_THREADS": str(args.threads)} if args.threads else None)
    try:
        asyncio.run(load(host, port, workload[:4], 4))  # warm-up
        for c in levels:
            requests = workload if c >= 32 else workload[: min(len(workload), 8 * c)]
            if c != top:
                results["server"][c] = summarize(*asyncio.run(load(host, port, requests, c)))
                continue
            results["offline"].append(offline(run, requests, args, max_num_seqs=c))
            for _ in range(args.repeats):
                results["top_runs"].append(summarize(*asyncio.run(load(host, port, requests, c))))
                results["offline"].append(offline(run, requests, args, max_num_seqs=c))
        results["offline_all_at_once"] = offline(run, workload, args)
    finally:
        proc.terminate()
        proc.wait(30)
    off = [r["tok_per_s"] for r in results["offline"]]
    ratios = [r["tok_per_s"] / ((a + b) / 2) for r, a, b in zip(results["top_runs"], off, off[1:], strict=False)]
    order = sorted(range(len(ratios)), key=ratios.__getitem__)
    results["server"][top] = results["top_runs"][order[len(order) // 2]]  # the run with the median ratio
    results["ratios_at_top"] = ratios
    results["ratio_at_top"] = statistics.median(ratios)
    results["offline_tok_per_s"] = statistics.median(off)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    workload = mixed_workload(n=args.requests, seed=0, vocab_size=PRESETS[args.preset]["vocab_size"])
    levels = sorted(int(c) for c in args.concurrency.split(","))
    info = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "preset": args.preset,
            "threads": torch.get_num_threads(), "requests": args.requests, "load_before": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = tiny_run(Path(tmp) / "run", args.preset, context_length=512)
        results = {**info, **measure(run, workload, levels, args), "load_after": os.getloadavg()}
    print_table(results, max(levels))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict, top: int) -> None:
    print(f"{'concurrency':>11} {'requests':>8} {'tokens':>7} {'tok/s':>8} {'TTFT p50':>9} {'p99':>8} "
          f"{'ITL p50':>8} {'p99':>8}")  # fmt: skip
    for c, r in sorted(results["server"].items()):
        print(f"{c:>11} {r['requests']:>8} {r['tokens']:>7} {r['tok_per_s']:>8.1f} {r['ttft_p50_ms']:>7.0f}ms "
              f"{r['ttft_p99_ms']:>6.0f}ms {r['itl_p50_ms']:>6.1f}ms {r['itl_p99_ms']:>6.1f}ms")  # fmt: skip
    for c, r in sorted(results["server"].items()):
        print(f"{c:>11} clients, TTFT of the first wave p50 {r['ttft_first_wave_p50_ms']:.0f} ms, max "
              f"{r['ttft_first_wave_max_ms']:.0f} ms; of the later requests p50 {r['ttft_later_p50_ms']:.0f} ms, "
              f"p99 {r['ttft_later_p99_ms']:.0f} ms")  # fmt: skip
    off = ", ".join(f"{r['tok_per_s']:.1f}" for r in results["offline"])
    print(f"offline Engine.generate on the same {results['offline'][0]['requests']} requests, {top} at a time: "
          f"{off} tok/s (median {results['offline_tok_per_s']:.1f}); all at once (the engine's default "
          f"max_num_seqs): {results['offline_all_at_once']['tok_per_s']:.1f}")  # fmt: skip
    verdict = "met" if results["ratio_at_top"] >= TARGET else "NOT met"
    each = ", ".join(f"{r:.2f}" for r in results["ratios_at_top"])
    print(
        f"server / offline at concurrency {top} (each run against the offline runs around it): {each}; "
        f"median {results['ratio_at_top']:.2f} (target >= {TARGET}: {verdict})"
    )
    print(f"load average {results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after")


if __name__ == "__main__":
    sys.exit(main())
