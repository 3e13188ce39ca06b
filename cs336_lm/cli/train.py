"""``lm-train --config FILE [key=value …]``: train (or resume) a language model from a YAML experiment config.

The config file is read against the schema in ``cs336_lm.config``; ``key=value`` overrides come after it and
win. ``--print-config`` shows the resolved config and exits without touching any file. The run itself is
``cs336_lm.training.train``. Exit status: 0 when training finished or was stopped by SIGINT/SIGTERM after
saving, 2 for bad input (config, data, tokenizer, out_dir), 1 when the run diverged (the loss became NaN/inf, or
rose ``train.diverge_margin`` above its start). Under torchrun
(``torchrun --nproc_per_node N --no-python lm-train --config … train.parallel=ddp``) a failure on any rank ends
every rank; the main process reports it and the others exit with the same status quietly.
"""

import argparse
import os
import sys

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.config import load_config, to_yaml

EPILOG = """\
overrides:
  Any config field can be set after the options as section.key=value; overrides are applied after the
  file, left to right, so the last one wins. Values are parsed like YAML (1e-3, true, null).

  lm-train --config configs/tinystories.yaml optim.lr=1e-3 train.max_steps=2000 train.out_dir=runs/ts-lr1e-3

resume:
  train.resume=auto (the default) continues from OUT_DIR/checkpoints/latest when it exists; run the same
  command again after an interruption. train.resume=none refuses to reuse a run directory that has
  checkpoints; train.resume=PATH starts from that checkpoint. SIGINT/SIGTERM save a checkpoint and exit 0.

several processes:
  torchrun --nproc_per_node 8 --no-python lm-train --config configs/owt.yaml train.parallel=ddp   (or fsdp)
  Each process draws its own batches; the global batch is batch_size x grad_accum_steps x processes.

outputs (in train.out_dir): config.yaml, tokenizer/, metrics.jsonl, checkpoints/step_XXXXXXXX.pt, checkpoints/latest.
See docs/training.md and docs/configs.md.
"""


class _HelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the epilog's line breaks."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-train",
        description="Train a Transformer language model from a YAML config, with key=value overrides.",
        formatter_class=_HelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument(
        "--config", required=True, metavar="FILE", default=argparse.SUPPRESS, help="experiment config (YAML)"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", default=argparse.SUPPRESS, help="config overrides (see below)"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, getattr(args, "overrides", []))
    if args.print_config:
        sys.stdout.write(to_yaml(cfg))
        return 0
    from cs336_lm.errors import DivergenceError, PeerFailure
    from cs336_lm.training import train  # torch and the model load only when training

    try:
        train(cfg)
    except DivergenceError as e:  # every rank sees the same all-reduced loss; the main one says so
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr)
        return 1
    except PeerFailure as e:
        if not e.quiet:
            print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
