"""``lm-export RUN_DIR_OR_CHECKPOINT --out DIR``: a run as a HuggingFace ``LlamaForCausalLM`` folder.

    lm-export runs/tinystories --out hf/tinystories
    python -c "from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained('hf/tinystories')"

The work is ``cs336_lm.interop.export.export_run`` (docs/interop.md). Bad input prints one ``error:`` line and exits
with status 2; nothing is left half-written.
"""

import argparse
from pathlib import Path

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.interop.export import DTYPES, export_run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-export",
        description="Write a run (its latest checkpoint) or a checkpoint as a HuggingFace LlamaForCausalLM folder: "
        "config.json, model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json, "
        "special_tokens_map.json.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", type=Path, help="run directory (train.out_dir) or a checkpoints/step_*.pt file")
    p.add_argument("--out", type=Path, required=True, help="folder to write (new or empty, unless --force)")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="dtype of the saved weights")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: RUN/tokenizer)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out folder")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    result = export_run(args.run, args.out, dtype=args.dtype, tokenizer_dir=args.tokenizer, force=args.force)
    tied = ", tied embeddings" if result.tied else ""
    print(
        f"wrote {result.out}: {', '.join(result.files)} ({result.parameters:,} parameters, {result.dtype}{tied}) "
        f"from {result.checkpoint} (iteration {result.iteration})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
