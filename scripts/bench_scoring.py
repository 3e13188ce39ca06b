"""Scoring throughput of ``lm-serve`` (``echo`` + ``max_tokens: 0`` + ``logprobs: 0``) beside the evaluation
library scoring the same windows in process.

The model is ``tiny_run(tmp, "tinystories-17m", context_length=C)`` (random weights); the text is ``W·(C − 1) + 1``
random token ids cut into ``W`` windows of ``C − 1`` inputs that tile it (``cs336_lm.evaluation.windows``: stride =
window), so each window scores ``C − 1`` tokens. In process: ``evaluate_ids(model, ids, C − 1, C − 1)`` — what
``lm-perplexity`` runs, its automatic batch size included. Through the server (a subprocess on a free loopback
port, the same engine settings as ``lm-serve``'s defaults): ``--clients`` concurrent clients (asyncio, one
HTTP/1.1 connection each) each send the next window's ``C`` tokens as a prompt of token ids and sum the
``token_logprobs`` of the answer, until every window is scored. Both sides score the same tokens; the script checks
that their total log-likelihoods agree.

Runs alternate, in process first: ``--repeats`` server runs, each between two in-process runs and set against their
mean; the median ratio is reported (target: server ≥ 0.8× in process). Both sides use ``--threads`` torch threads.
The load average before and after is kept: on a shared machine the figures move with it.

    python scripts/bench_scoring.py --threads 1 --json bench-scoring.json
    python scripts/bench_scoring.py --quick
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
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_workload import start_server, tiny_run

from cs336_lm.evaluation.evaluate import evaluate_ids
from cs336_lm.nn import PRESETS
from cs336_lm.run import load_run

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.8


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS), help="the model's shape")
    p.add_argument("--context", type=int, default=256, help="the model's context C (windows of C - 1 inputs)")
    p.add_argument("--windows", type=int, default=64, help="windows W to score per run")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the server")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads, both sides (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="server runs, each between two in-process runs")
    p.add_argument("--quick", action="store_true", help="16 windows, 1 repeat: a smoke run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.windows, args.repeats = 16, 1
    return args


# ---- the server side ------------------------------------------------------------------------------------------


async def score_one(reader, writer, host: str, prompt: list[int]) -> float:
    """Send one scoring request on an open connection; the sum of its prompt tokens' log-probabilities."""
    body = json.dumps({"prompt": prompt, "echo": True, "max_tokens": 0, "logprobs": 0}).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"the server answered {status!r}")
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    answer = json.loads(await reader.readexactly(length))
    return sum(answer["choices"][0]["logprobs"]["token_logprobs"][1:])


async def load(host: str, port: int, prompts: list[list[int]], clients: int) -> tuple[float, float]:
    """Score ``prompts`` from ``clients`` connections; (total log-likelihood, seconds)."""
    pending = list(reversed(prompts))
    sums: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending:
                sums.append(await score_one(reader, writer, host, pending.pop()))
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return sum(sums), time.perf_counter() - start


# ---- both -----------------------------------------------------------------------------------------------------


def in_process(model, ids: np.ndarray, window: int) -> tuple[float, float]:
    """``evaluate_ids`` over the windows; (total log-likelihood, seconds)."""
    start = time.perf_counter()
    nll, _ = evaluate_ids(model, ids, window, window, progress=False)
    return -nll, time.perf_counter() - start


def measure(run: Path, args: argparse.Namespace) -> dict:
    window = args.context - 1
    rng = np.random.default_rng(0)
    ids = rng.integers(0, PRESETS[args.preset]["vocab_size"], size=args.windows * window + 1, dtype=np.int64)
    prompts = [ids[i * window : (i + 1) * window + 1].tolist() for i in range(args.windows)]
    tokens = args.windows * window
    model = load_run(run, "cpu").model
    results: dict = {"tokens": tokens, "in_process": [], "server": []}
    proc, host, port = start_server(run, *(["--threads", str(args.threads)] if args.threads else []))
    try:
        asyncio.run(load(host, port, prompts[:2], 2))  # warm-up
        in_process(model, ids[: 2 * window + 1], window)
        results["in_process"].append(in_process(model, ids, window))
        for _ in range(args.repeats):
            results["server"].append(asyncio.run(load(host, port, prompts, args.clients)))
            results["in_process"].append(in_process(model, ids, window))
    finally:
        proc.terminate()
        proc.wait(30)
    rate = lambda runs: [tokens / seconds for _, seconds in runs]
    off, on = rate(results["in_process"]), rate(results["server"])
    ratios = [s / ((a + b) / 2) for s, a, b in zip(on, off, off[1:], strict=False)]
    results.update(
        in_process_tok_per_s=off,
        server_tok_per_s=on,
        ratios=ratios,
        ratio=statistics.median(ratios),
        loglik_in_process=results["in_process"][0][0],
        loglik_server=results["server"][0][0],
    )
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "preset": args.preset,
            "context": args.context, "windows": args.windows, "clients": args.clients,
            "threads": torch.get_num_threads(), "load_before": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = tiny_run(Path(tmp) / "run", args.preset, context_length=args.context)
        results = {**info, **measure(run, args), "load_after": os.getloadavg()}
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(r: dict) -> None:
    print(f"{r['windows']} windows of {r['context'] - 1} scored tokens ({r['tokens']} tokens), {r['preset']}, "
          f"{r['threads']} torch thread(s)")  # fmt: skip
    print("in process (evaluate_ids): " + ", ".join(f"{x:.0f}" for x in r["in_process_tok_per_s"]) + " tok/s")
    print(f"lm-serve, {r['clients']} clients: " + ", ".join(f"{x:.0f}" for x in r["server_tok_per_s"]) + " tok/s")
    gap = abs(r["loglik_server"] - r["loglik_in_process"]) / abs(r["loglik_in_process"])
    print(f"total log-likelihood: in process {r['loglik_in_process']:.3f}, server {r['loglik_server']:.3f} "
          f"(relative difference {gap:.1e})")  # fmt: skip
    verdict = "met" if r["ratio"] >= TARGET else "NOT met"
    each = ", ".join(f"{x:.2f}" for x in r["ratios"])
    print(f"server / in process (each server run against the runs around it): {each}; median {r['ratio']:.2f} "
          f"(target >= {TARGET}: {verdict})")  # fmt: skip
    print(f"load average {r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after")


if __name__ == "__main__":
    sys.exit(main())
