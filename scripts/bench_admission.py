"""Time to first token of chat requests queued behind a harness's backlog: the engine's admission order
(shortest prompt first, with aging) beside first come, first served.

In process, at the tinystories-17m shape (``--preset``; random weights): a backlog of ``--backlog`` scoring
windows (256-token prompts, ``max_new_tokens=0``, ``prompt_logprobs=0``, as a harness sends them) is queued at
once, beside ``--clients`` chat clients in a closed loop (each sends the next prompt of the mixed workload,
``scripts/engine_workload.py``, 40 new tokens at most, when its previous one ends) until ``--chats`` have run.
Both policies run the same requests, taking turns ``--repeats`` times; reported per run: the chats' TTFT p50 and
p99 (added → first token), the most steps a chat waited for its first token, when the last window was scored and
when everything ended.

    python scripts/bench_admission.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_workload import mixed_workload, tiny_run

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.engine.scheduler import Scheduler
from cs336_lm.nn import PRESETS
from cs336_lm.run import load_run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS), help="the model's shape")
    p.add_argument("--backlog", type=int, default=64, help="scoring windows of 256 tokens queued at the start")
    p.add_argument("--clients", type=int, default=8, help="chat clients in a closed loop")
    p.add_argument("--chats", type=int, default=48, help="chat requests in all")
    p.add_argument("--max-batch-tokens", type=int, default=512, help="the engine's max_batch_tokens")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each policy, taking turns")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def fcfs(scheduler: Scheduler) -> list:
    """The reference order: the queue's (preempted sequences at its front, then arrival order)."""
    return list(scheduler.waiting)


def run_once(model, tokenizer, args: argparse.Namespace, policy: str) -> dict:
    vocab = model.vocab_size
    rng = random.Random(2)
    engine = Engine(model, max_batch_tokens=args.max_batch_tokens, tokenizer=tokenizer)
    if policy == "fcfs":
        engine.scheduler.admission_order = lambda: fcfs(engine.scheduler)  # type: ignore[method-assign]
    windows = [engine.add_request([rng.randrange(vocab) for _ in range(256)],
                                  SamplingParams(max_new_tokens=0, prompt_logprobs=0))
               for _ in range(args.backlog)]  # fmt: skip
    pending = list(reversed(mixed_workload(n=args.chats, seed=1, vocab_size=vocab)))
    sent: dict[int, tuple[float, int]] = {}  # chat id -> (time, step) until its first token
    ttft, waited, chats = [], [], set()

    def submit() -> None:
        r = pending.pop()
        rid = engine.add_request(r.prompt, SamplingParams(max_new_tokens=min(r.max_new_tokens, 40)))
        sent[rid] = (time.perf_counter(), engine.scheduler.steps)
        chats.add(rid)

    for _ in range(args.clients):
        submit()
    start, scored = time.perf_counter(), 0.0
    while engine.has_unfinished:
        events = engine.step()
        now = time.perf_counter()
        for e in events:
            if e.request_id in sent and e.token is not None:
                t, step = sent.pop(e.request_id)
                ttft.append(now - t)
                waited.append(engine.scheduler.steps - step)
            if e.finish_reason is not None and e.request_id in chats and pending:
                submit()
            if e.finish_reason is not None and e.request_id == windows[-1]:
                scored = now - start
    ttft.sort()
    return {"policy": policy, "ttft_p50_ms": 1e3 * statistics.median(ttft),
            "ttft_p99_ms": 1e3 * ttft[min(len(ttft) - 1, round(0.99 * (len(ttft) - 1)))],
            "most_steps_waited": max(waited), "backlog_scored_s": scored,
            "total_s": time.perf_counter() - start}  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = load_run(tiny_run(Path(tmp) / "run", args.preset, context_length=512), "cpu")
    runs = []
    for _ in range(args.repeats):
        for policy in ("fcfs", "engine"):
            r = run_once(run.model, run.tokenizer, args, policy)
            runs.append(r)
            print(f"{policy:>6}: chat TTFT p50 {r['ttft_p50_ms']:6.0f} ms, p99 {r['ttft_p99_ms']:6.0f} ms, at most "
                  f"{r['most_steps_waited']:>2} steps; backlog scored at {r['backlog_scored_s']:5.1f} s, all done "
                  f"{r['total_s']:5.1f} s", flush=True)  # fmt: skip
    for key in ("ttft_p99_ms", "total_s"):
        ours = statistics.median(r[key] for r in runs if r["policy"] == "engine")
        ref = statistics.median(r[key] for r in runs if r["policy"] == "fcfs")
        print(f"median {key}: engine {ours:.1f}, first come first served {ref:.1f} (ratio {ours / ref:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
