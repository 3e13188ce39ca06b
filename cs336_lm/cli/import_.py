"""``lm-import HF_DIR --out RUN_DIR``: a HuggingFace Llama-architecture folder as a cs336_lm run directory.

    lm-import hf/tinystories --out runs/imported
    lm-generate runs/imported --prompt "Once upon a time"
    lm-train --config runs/imported/config.yaml data.train_path=… data.val_path=… train.out_dir=runs/ft

The work is ``cs336_lm.interop.import_.import_hf`` (docs/interop.md). What cs336_lm cannot represent (another
architecture, RoPE scaling, biases, a tokenizer that is not byte-level BPE, mismatched vocabulary sizes) prints one
``error:`` line naming the field and exits with status 2; nothing is left half-written.
"""

import argparse
import sys
from pathlib import Path

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.interop.import_ import import_hf


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-import",
        description="Turn a HuggingFace LlamaForCausalLM folder (config.json, model.safetensors or its shards, "
        "tokenizer.json or vocab.json + merges.txt) into a run directory that lm-generate, lm-perplexity, lm-export "
        "and lm-train (train.init_from) read.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("hf_dir", type=Path, metavar="HF_DIR", help="HuggingFace model folder")
    p.add_argument("--out", type=Path, required=True, help="run directory to write (new or empty, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out directory")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    result = import_hf(args.hf_dir, args.out, force=args.force)
    m = result.model
    gqa = f", {m.kv_heads} kv heads" if m.kv_heads != m.num_heads else ""
    tied = ", tied embeddings" if result.tied else ""
    dtype = "float32" if result.source_dtype == "float32" else f"{result.source_dtype} weights stored as float32"
    print(
        f"wrote {result.out}: {result.parameters:,} parameters ({dtype}{tied}), {m.num_layers} layers, "
        f"d_model {m.d_model}, {m.num_heads} heads{gqa}, vocab {m.vocab_size}, context {m.context_length}; "
        f"checkpoint {result.checkpoint}"
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
