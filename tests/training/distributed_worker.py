"""What the distributed tests start under torchrun: ``lm-train`` with test hooks, one process per rank.

``python -m torch.distributed.run --nproc_per_node 2 distributed_worker.py [--fail-rank R --fail-at setup|step]
[--overflow-rank R --overflow-step S] lm-train LM-TRAIN-ARGS…`` (a ``lm-train`` marker, as torchrun swallows
``--``). Every process trains on one thread. ``--fail-at setup`` gives rank R a missing training file (a path only
it sees); ``--fail-at step`` makes rank R raise a ``DataError`` in its second step. ``--overflow-step S`` puts an
inf into rank R's own (already reduced) gradient at step S, as if only its copy had overflowed, and every DDP rank
saves its final weights to ``OUT_DIR/params_rank{RANK}.pt``.
"""

import argparse
import sys

import torch

from cs336_lm.errors import DataError
from cs336_lm.training.trainer import Trainer


def install_failure(rank: int, where: str, args: list[str]) -> list[str]:
    """Make ``rank`` fail at setup (a training file only it lacks) or in its second step (an injected error)."""
    import os

    if int(os.environ.get("RANK", "0")) != rank:
        return args
    if where == "setup":
        return [a if not a.startswith("data.train_path=") else "data.train_path=/nonexistent/train.npy" for a in args]
    original = Trainer.train_step

    def train_step(self):
        if self.step == 1:
            raise DataError("injected failure on this rank")
        return original(self)

    Trainer.train_step = train_step
    return args


def install_overflow(rank: int, step: int) -> None:
    """Rank ``rank``'s gradients hold an inf at step ``step`` (after the gradient reduction); DDP ranks save weights."""
    import os

    from cs336_lm.training.scaler import LossScaler

    me = int(os.environ.get("RANK", "0"))
    original_unscale, original_run = LossScaler.unscale_, Trainer.run
    calls = {"n": 0}

    def unscale_(self, grads):
        calls["n"] += 1  # once per optimizer step
        if me == rank and calls["n"] == step:
            grads[0].view(-1)[0] = float("inf")
        return original_unscale(self, grads)

    def run(self):
        result = original_run(self)
        if not self.job.sharded:  # FSDP's ranks hold different shards: nothing to compare
            torch.save(self.job.model.state_dict(), self.job.run_dir.root / f"params_rank{me}.pt")
        return result

    LossScaler.unscale_ = unscale_
    Trainer.run = run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-rank", type=int)
    parser.add_argument("--fail-at", choices=["setup", "step"])
    parser.add_argument("--overflow-rank", type=int)
    parser.add_argument("--overflow-step", type=int)
    split = sys.argv.index("lm-train") if "lm-train" in sys.argv else len(sys.argv)
    args = parser.parse_args(sys.argv[1:split])
    train_args = sys.argv[split + 1 :]
    torch.set_num_threads(1)
    if args.fail_rank is not None:
        train_args = install_failure(args.fail_rank, args.fail_at, train_args)
    if args.overflow_rank is not None:
        install_overflow(args.overflow_rank, args.overflow_step)
    from cs336_lm.cli.train import main as lm_train

    return lm_train(train_args)


if __name__ == "__main__":
    sys.exit(main())
