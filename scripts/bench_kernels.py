"""Benchmark the Triton kernels (softmax, causal softmax, RMSNorm, residual-add + RMSNorm) on an NVIDIA GPU.

For every op, dtype (bf16, fp32), row count (4K-64K) and hidden size (512-8192), the forward and the
forward+backward are timed for four implementations, interleaved within each repeat:

  triton        our kernels (through ``cs336_lm.nn.dispatch`` with backend "triton")
  ref           the pure-torch reference the model runs elsewhere (``cs336_lm.nn.functional``), eager
  ref-compile   the same reference under ``torch.compile``
  native        torch's own op: ``torch.softmax`` / ``torch.nn.functional.rms_norm`` (mask + softmax, add + norm)

Times are medians of ``triton.testing.do_bench`` (L2 flushed between calls) over the repeats. GB/s counts
the minimum traffic of a fused kernel (softmax fwd 2·N elements, fwd+bwd 5·N; RMSNorm 2·N / 5·N; add+RMSNorm
4·N / 8·N) and is also shown as a percentage of the peak HBM bandwidth (``--peak-gbps``, defaulting by
device name). A summary checks the targets: forward >= 80% of peak, forward+backward >= 1.3x ``ref`` and
>= 1.0x ``ref-compile``. Finally a full training step of the ``tinystories-17m`` preset (forward under bf16
autocast or fp32, cross-entropy, backward, clipping, AdamW) is timed with ``kernels="torch"`` vs ``"triton"``.
"""

import argparse
import datetime
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm import tqdm

from cs336_lm.nn import PRESETS, TransformerLM, dispatch
from cs336_lm.nn import functional as F
from cs336_lm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay

EPS = 1e-5
IMPLS = ("triton", "ref", "ref-compile", "native")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# (substring of torch.cuda.get_device_name(), peak HBM GB/s); the first match wins
PEAK_GBPS = [("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100", 3350.0), ("A100-SXM4-80GB", 2039.0), ("A100", 1555.0)]


@dataclass(frozen=True)
class Op:
    """One benchmarked op: how to build its inputs and the four implementations of it."""

    name: str
    traffic: tuple[int, int]  # elements moved per input element: (forward, forward+backward)
    make_inputs: Callable  # (rows, hidden, dtype, device) -> (tensors, differentiable ones), or None if unsuited
    impls: dict[str, Callable]  # impl name -> fn(*tensors) -> tensor or tuple of tensors


def _leaf(*shape: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)


def _softmax_inputs(rows, hidden, dtype, device):
    x = _leaf(rows, hidden, dtype=dtype, device=device)
    return [x], [x]


def _causal_inputs(rows, hidden, dtype, device):
    # hidden = the number of keys: scores of (rows / hidden) heads × hidden queries × hidden keys
    if rows % hidden:
        return None
    s = _leaf(rows // hidden, hidden, hidden, dtype=dtype, device=device)
    return [s], [s]


def _rms_inputs(rows, hidden, dtype, device):
    x, w = _leaf(rows, hidden, dtype=dtype, device=device), _leaf(hidden, dtype=dtype, device=device)
    return [x, w], [x, w]


def _add_rms_inputs(rows, hidden, dtype, device):
    x, r = (_leaf(rows, hidden, dtype=dtype, device=device) for _ in range(2))
    w = _leaf(hidden, dtype=dtype, device=device)
    return [x, r, w], [x, r, w]


def _masked_softmax(s: torch.Tensor) -> torch.Tensor:
    hidden = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu_(1)  # (q, k), key j > query i
    return torch.softmax((s * s.shape[-1] ** -0.5).masked_fill(hidden, float("-inf")), dim=-1)


def _native_add_rms(x, r, w):
    s = x + r
    return torch.nn.functional.rms_norm(s, (s.shape[-1],), w, EPS), s


def build_ops() -> list[Op]:
    # One compiled function per op, specialised to each shape (dynamic=False; the recompile limit is raised in main).
    compile_ = functools.partial(torch.compile, dynamic=False)
    ref_softmax = lambda x: F.softmax(x, -1)
    ref_causal = lambda s: F.causal_softmax(s, s.shape[-1] ** -0.5, 0)
    ref_rms = lambda x, w: F.rms_norm(x, w, EPS)
    ref_add_rms = lambda x, r, w: dispatch.add_rms_norm(x, r, w, EPS, backend="torch")
    return [
        Op(
            "softmax",
            (2, 5),
            _softmax_inputs,
            {
                "triton": lambda x: dispatch.softmax(x, -1, backend="triton"),
                "ref": ref_softmax,
                "ref-compile": compile_(ref_softmax),
                "native": lambda x: torch.softmax(x, -1),
            },
        ),
        Op(
            "causal_softmax",
            (2, 5),
            _causal_inputs,
            {
                "triton": lambda s: dispatch.causal_softmax(s, s.shape[-1] ** -0.5, 0, backend="triton"),
                "ref": ref_causal,
                "ref-compile": compile_(ref_causal),
                "native": _masked_softmax,
            },
        ),
        Op(
            "rms_norm",
            (2, 5),
            _rms_inputs,
            {
                "triton": lambda x, w: dispatch.rms_norm(x, w, EPS, backend="triton"),
                "ref": ref_rms,
                "ref-compile": compile_(ref_rms),
                "native": lambda x, w: torch.nn.functional.rms_norm(x, (x.shape[-1],), w, EPS),
            },
        ),
        Op(
            "add_rms_norm",
            (4, 8),
            _add_rms_inputs,
            {
                "triton": lambda x, r, w: dispatch.add_rms_norm(x, r, w, EPS, backend="triton"),
                "ref": ref_add_rms,
                "ref-compile": compile_(ref_add_rms),
                "native": _native_add_rms,
            },
        ),
    ]


def time_ms(fn: Callable, quick: bool, device: str) -> float:
    """Median milliseconds per call: ``triton.testing.do_bench`` on CUDA, a wall clock for the CPU smoke test."""
    if device == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10 if quick else 25, rep=30 if quick else 100, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(op: Op, impl: str, tensors, diff, cotangents, backward: bool, args) -> float:
    fn = op.impls[impl]
    if not backward:

        def run():
            with torch.no_grad():
                fn(*tensors)
    else:

        def run():
            outputs = fn(*tensors)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            torch.autograd.grad(outputs, diff, cotangents[: len(outputs)])

    return time_ms(run, args.quick, args.device)


def bench_kernels(args, peak: float | None) -> list[dict]:
    ops = [op for op in build_ops() if op.name in args.ops]
    cases = [(op, d, r, h) for op in ops for d in args.dtypes for r in args.rows for h in args.hidden]
    results = []
    for op, dtype_name, rows, hidden in tqdm(cases, desc="kernels", unit="shape"):
        made = op.make_inputs(rows, hidden, DTYPES[dtype_name], args.device)
        if made is None:
            continue
        tensors, diff = made
        cotangents = [torch.randn_like(tensors[0]) for _ in range(2)]
        numel, size = tensors[0].numel(), tensors[0].element_size()
        for backward, mode in ((False, "fwd"), (True, "fwd+bwd")):
            samples = {impl: [] for impl in IMPLS}
            for _ in range(args.repeats):
                for impl in IMPLS:  # interleaved: noise hits every implementation alike
                    samples[impl].append(measure(op, impl, tensors, diff, cotangents, backward, args))
            for impl in IMPLS:
                ms = statistics.median(samples[impl])
                gbps = op.traffic[backward] * numel * size / ms / 1e6
                results.append(
                    {
                        "op": op.name,
                        "mode": mode,
                        "dtype": dtype_name,
                        "rows": rows,
                        "hidden": hidden,
                        "impl": impl,
                        "ms": ms,
                        "gbps": gbps,
                        "pct_peak": 100 * gbps / peak if peak else None,
                    }
                )
        del tensors, diff, cotangents
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return results


def print_kernel_table(results: list[dict]) -> None:
    print(
        f"\n{'op':<15}{'mode':<9}{'dtype':<6}{'rows x hidden':>15}  {'triton ms':>9} {'GB/s':>6} {'%peak':>6}"
        + "".join(f"  {impl + ' ms':>14} {'x':>5}" for impl in IMPLS[1:])
    )
    keyed = {(r["op"], r["mode"], r["dtype"], r["rows"], r["hidden"], r["impl"]): r for r in results}
    for key in dict.fromkeys(k[:5] for k in keyed):
        ours = keyed[(*key, "triton")]
        pct = f"{ours['pct_peak']:.0f}%" if ours["pct_peak"] is not None else "-"
        shape = f"{key[3]}x{key[4]}"
        line = f"{key[0]:<15}{key[1]:<9}{key[2]:<6}{shape:>15}  {ours['ms']:>9.4f} {ours['gbps']:>6.0f} {pct:>6}"
        for impl in IMPLS[1:]:
            other = keyed[(*key, impl)]
            line += f"  {other['ms']:>14.4f} {other['ms'] / ours['ms']:>5.2f}"
        print(line)
    print("x = that implementation's time / triton's time (above 1: triton is faster)")


def summarize_targets(results: list[dict]) -> list[dict]:
    """Per op: shapes meeting fwd >= 80% of peak, fwd+bwd >= 1.3x ref and >= 1.0x ref-compile."""
    keyed = {(r["op"], r["mode"], r["dtype"], r["rows"], r["hidden"], r["impl"]): r for r in results}
    summary = []
    for op in dict.fromkeys(r["op"] for r in results):
        ours = [r for r in results if r["op"] == op and r["impl"] == "triton"]
        fwd = [r["pct_peak"] for r in ours if r["mode"] == "fwd" and r["pct_peak"] is not None]
        ratio = {
            impl: [
                keyed[(op, "fwd+bwd", r["dtype"], r["rows"], r["hidden"], impl)]["ms"] / r["ms"]
                for r in ours
                if r["mode"] == "fwd+bwd"
            ]
            for impl in ("ref", "ref-compile")
        }
        summary.append(
            {
                "op": op,
                "fwd_pct_peak_median": statistics.median(fwd) if fwd else None,
                "fwd_at_80pct": f"{sum(p >= 80 for p in fwd)}/{len(fwd)}" if fwd else "no peak given",
                "fwdbwd_vs_ref_median": statistics.median(ratio["ref"]),
                "fwdbwd_at_1.3x_ref": f"{sum(x >= 1.3 for x in ratio['ref'])}/{len(ratio['ref'])}",
                "fwdbwd_vs_compile_median": statistics.median(ratio["ref-compile"]),
                "fwdbwd_at_1.0x_compile": f"{sum(x >= 1.0 for x in ratio['ref-compile'])}/{len(ratio['ref-compile'])}",
            }
        )
    print("\ntargets (shapes meeting each, and medians):")
    for s in summary:
        pct = f"{s['fwd_pct_peak_median']:.0f}%" if s["fwd_pct_peak_median"] is not None else "-"
        print(
            f"  {s['op']:<15} fwd >= 80% peak: {s['fwd_at_80pct']:>7} (median {pct})   "
            f"fwd+bwd >= 1.3x ref: {s['fwdbwd_at_1.3x_ref']:>7} (median {s['fwdbwd_vs_ref_median']:.2f}x)   "
            f">= 1.0x compile: {s['fwdbwd_at_1.0x_compile']:>7} (median {s['fwdbwd_vs_compile_median']:.2f}x)"
        )
    return summary


def bench_train_step(args) -> list[dict]:
    """Median time of one training step of the preset with kernels="torch" and "triton", interleaved."""
    shape = PRESETS[args.preset]
    torch.manual_seed(0)
    setups = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)  # the same initial weights for both
        model = TransformerLM(**shape, kernels=backend, device=args.device)
        optimizer = AdamW(param_groups_for_weight_decay(model, 0.1), lr=1e-3)
        setups[backend] = (model, optimizer)
    tokens = torch.randint(0, shape["vocab_size"], (args.batch_size, shape["context_length"] + 1), device=args.device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    results = []
    for dtype_name in args.train_dtypes:
        autocast = torch.autocast(args.device, dtype=torch.bfloat16) if dtype_name == "bf16" else nullcontext()
        samples = {backend: [] for backend in setups}
        for _ in tqdm(range(args.repeats), desc=f"train step {dtype_name}", unit="repeat"):
            for backend, (model, optimizer) in setups.items():

                def step(model=model, optimizer=optimizer, autocast=autocast):
                    with autocast:
                        loss = F.cross_entropy(model(inputs), targets)
                    loss.backward()
                    clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)

                samples[backend].append(time_ms(step, args.quick, args.device))
        for backend, times in samples.items():
            ms = statistics.median(times)
            tokens_per_s = args.batch_size * shape["context_length"] / ms * 1e3
            results.append(
                {
                    "preset": args.preset,
                    "dtype": dtype_name,
                    "kernels": backend,
                    "batch_size": args.batch_size,
                    "ms": ms,
                    "tokens_per_s": tokens_per_s,
                }
            )
        torch_ms, triton_ms = (statistics.median(samples[b]) for b in ("torch", "triton"))
        print(
            f"train step {args.preset} {dtype_name} batch {args.batch_size}: torch {torch_ms:.2f} ms, "
            f"triton {triton_ms:.2f} ms, speed-up {torch_ms / triton_ms:.2f}x"
        )
    return results


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def default_peak(device_name: str) -> float | None:
    return next((gbps for key, gbps in PEAK_GBPS if key in device_name), None)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--ops", nargs="+", default=["softmax", "causal_softmax", "rms_norm", "add_rms_norm"])
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    parser.add_argument("--rows", nargs="+", type=int, default=[4096, 16384, 65536])
    parser.add_argument("--hidden", nargs="+", type=int, default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per measurement (median taken)")
    parser.add_argument(
        "--peak-gbps",
        type=float,
        default=None,
        help="peak HBM bandwidth; default by device name (H100 SXM 3350, H200 4800)",
    )
    parser.add_argument("--preset", default="tinystories-17m", help="model preset for the training-step benchmark")
    parser.add_argument("--batch-size", type=int, default=32, help="training-step batch size")
    parser.add_argument("--train-dtypes", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    parser.add_argument("--skip-kernels", action="store_true", help="only the training step")
    parser.add_argument("--skip-train", action="store_true", help="only the kernels")
    parser.add_argument("--quick", action="store_true", help="a smoke run: bf16, 16K rows, hidden 1024 and 4096")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cpu: a smoke test of this script through the Triton interpreter (set TRITON_INTERPRET=1); "
        "its timings mean nothing",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.dtypes, args.rows, args.hidden, args.train_dtypes = ["bf16"], [16384], [1024, 4096], ["bf16"]
        args.repeats, args.batch_size = min(args.repeats, 2), min(args.batch_size, 8)
    unknown = set(args.ops) - {"softmax", "causal_softmax", "rms_norm", "add_rms_norm"}
    if unknown:
        parser.error(f"unknown ops {sorted(unknown)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: bench_kernels.py needs an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        print("error: --device cpu runs the kernels through the interpreter: set TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    for name in ("recompile_limit", "cache_size_limit"):  # every shape compiles its own graph
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1024)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    peak = args.peak_gbps or default_peak(device_name)
    print(f"device: {device_name}; peak HBM bandwidth: {f'{peak:.0f} GB/s' if peak else 'unknown (pass --peak-gbps)'}")
    report = {
        "date": datetime.date.today().isoformat(),
        "device": device_name,
        "peak_gbps": peak,
        "torch": torch.__version__,
        "argv": sys.argv[1:],
    }
    if not args.skip_kernels:
        report["kernels"] = bench_kernels(args, peak)
        print_kernel_table(report["kernels"])
        report["targets"] = summarize_targets(report["kernels"])
    if not args.skip_train:
        report["train_step"] = bench_train_step(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
