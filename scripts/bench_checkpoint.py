"""What the checkpoint digest costs: saving, loading and rotating a checkpoint with and without it.

The model is ``--preset`` (default ``tinystories-17m``, 22.7M parameters) with AdamW state after one step, so a
checkpoint holds the weights and both moments in fp32 (about 272 MB), as ``lm-train`` writes it. Each repeat
times, interleaved:

- ``digest``: ``content_digest`` over the whole checkpoint dict in memory (what saving adds);
- ``save, no digest``: ``torch.save`` through ``atomic_write`` (temporary file, fsync, rename): the format before;
- ``save``: ``save_checkpoint`` (digest + the same write);
- ``load, no check``: ``torch.load(weights_only=True)``, the file in the page cache;
- ``load``: ``read_checkpoint`` (the same load + digest check): what ``lm-generate`` and a resume do;
- ``verify (rotation)``: ``verify_checkpoint`` (memory-mapped load + digest check): what ``RunDir.prune`` reads
  back, once per checkpoint saved when older ones are deleted.

Medians over ``--repeats`` are printed with the throughput of the hash (MB/s). ``--json PATH`` writes them;
``--quick`` uses the ``debug`` preset as a smoke test.

    python scripts/bench_checkpoint.py [--preset tinystories-17m] [--repeats 5] [--threads 1] [--json out.json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from cs336_lm.fileio import atomic_write
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.optim import AdamW
from cs336_lm.run import capture_rng_state, read_checkpoint, save_checkpoint, verify_checkpoint
from cs336_lm.run.digest import content_digest


def trained_state(preset: str) -> tuple[TransformerLM, AdamW]:
    """A model of ``preset`` and its AdamW after one step (so both moments exist, as in any real checkpoint)."""
    torch.manual_seed(0)
    model = TransformerLM(**PRESETS[preset])
    opt = AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    return model, opt


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(preset: str, repeats: int, root: Path) -> dict:
    model, opt = trained_state(preset)
    path, plain = root / "with_digest.pt", root / "no_digest.pt"
    ckpt = {"format_version": 1, "model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": 1,
            "config": {"model": PRESETS[preset].to_dict()}, "rng": capture_rng_state()}  # fmt: skip

    def save_plain():
        with atomic_write(plain, "wb") as f:
            torch.save(ckpt, f)

    steps = {
        "digest": lambda: content_digest(ckpt),
        "save, no digest": save_plain,
        "save": lambda: save_checkpoint(model, opt, 1, path, config={"model": PRESETS[preset].to_dict()}),
        "load, no check": lambda: torch.load(plain, weights_only=True),
        "load": lambda: read_checkpoint(path),
        "verify (rotation)": lambda: verify_checkpoint(path),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            times[name].append(timed(fn))
    size = path.stat().st_size
    return {
        "preset": preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint_bytes": size,
        "median_s": {name: statistics.median(ts) for name, ts in times.items()},
        "all_s": times,
    }


def table(result: dict) -> str:
    med = result["median_s"]
    mb = result["checkpoint_bytes"] / 1e6
    lines = [
        f"{result['preset']}: {result['parameters'] / 1e6:.1f}M parameters, checkpoint {mb:.0f} MB "
        f"(weights + AdamW moments, fp32)",
        "",
        "| step | median s |",
        "|---|---:|",
        *(f"| {name} | {seconds:.3f} |" for name, seconds in med.items()),
        "",
        f"hash throughput {mb / med['digest']:,.0f} MB/s; "
        f"save +{med['save'] - med['save, no digest']:.3f} s ({med['save'] / med['save, no digest'] - 1:+.0%}), "
        f"load +{med['load'] - med['load, no check']:.3f} s ({med['load'] / med['load, no check'] - 1:+.0%})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--dir", type=Path, default=None, help="where to write the checkpoints (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="debug preset, 2 repeats")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    preset, repeats = ("debug", 2) if args.quick else (args.preset, args.repeats)
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        result = measure(preset, repeats, Path(root))
    result.update(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s)",
    )
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
