"""``lm-train-bpe``: train a byte-level BPE tokenizer on a UTF-8 text file and save it as a tokenizer directory.

    lm-train-bpe corpus.txt --vocab-size 10000 --special-token '<|endoftext|>' --out tokenizers/corpus-10k

The directory (``vocab.json``, ``merges.txt``, ``special_tokens.json``) loads with
``Tokenizer.from_directory``. It is written beside the target and renamed into place only when complete.
"""

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.errors import ConfigError
from cs336_lm.fileio import atomic_directory, check_writable
from cs336_lm.tokenizer import Tokenizer, train_bpe
from cs336_lm.tokenizer.files import MERGES_FILE, SPECIAL_TOKENS_FILE, VOCAB_FILE
from cs336_lm.tokenizer.pretokenize import DEFAULT_CHUNK_BYTES

DEFAULT_SPECIAL_TOKEN = "<|endoftext|>"
TOKENIZER_FILES = {VOCAB_FILE, MERGES_FILE, SPECIAL_TOKENS_FILE}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-train-bpe",
        description="Train a byte-level BPE tokenizer (GPT-2 pre-tokenization) and save it as a directory.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", type=Path, help="UTF-8 text file; documents separated by the first special token")
    parser.add_argument(
        "--out", type=Path, required=True, default=argparse.SUPPRESS, help="tokenizer directory (replaced as a whole)"
    )
    parser.add_argument("--vocab-size", type=int, default=10_000, help="256 bytes + special tokens + merged tokens")
    parser.add_argument(
        "--special-token",
        action="append",
        dest="special_tokens",
        default=argparse.SUPPRESS,
        metavar="TOKEN",
        help=f"special token, repeatable; ids 0.. in the given order (default: {DEFAULT_SPECIAL_TOKEN})",
    )
    parser.add_argument("--no-special-tokens", action="store_true", help="train without any special token")
    parser.add_argument(
        "--num-workers", type=int, default=argparse.SUPPRESS, help="pre-tokenization processes (default: one per CPU)"
    )
    parser.add_argument(
        "--chunk-mb", type=float, default=DEFAULT_CHUNK_BYTES / 2**20, help="MiB of text per pre-tokenization task"
    )
    return parser


def special_tokens_from(args: argparse.Namespace) -> list[str]:
    if args.no_special_tokens:
        if getattr(args, "special_tokens", None):
            raise ConfigError("--no-special-tokens contradicts --special-token")
        return []
    tokens = getattr(args, "special_tokens", None) or [DEFAULT_SPECIAL_TOKEN]
    for token in tokens:
        try:
            token.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 arrive from argv as lone surrogates
            raise ConfigError(f"--special-token {token!r} is not UTF-8 text") from None
    return tokens


def check_out_dir(out: Path) -> None:
    """Refuse, before training, an ``--out`` that is a file, a directory holding anything but tokenizer files, or a
    directory that could not be replaced (read-only, or under a file or a read-only directory).

    The directory is replaced as a whole, so pointing ``--out`` at, say, a home directory must not wipe it.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in TOKENIZER_FILES)
        if others:
            raise ConfigError(f"--out {out} holds files other than a tokenizer's (e.g. {others[0]}); choose another")
    check_writable(out, directory=True)


def memory_peak_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child process, in MiB."""
    try:
        import resource
    except ImportError:  # not on Windows
        return float("nan"), float("nan")
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10  # macOS reports bytes, Linux KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return own, children


def summary(out: Path, seconds: float, vocab: dict[int, bytes], merges: list, specials: list[str]) -> str:
    own, child = memory_peak_mib()
    special_bytes = {t.encode("utf-8") for t in specials}
    longest = sorted((t for t in vocab.values() if t not in special_bytes), key=lambda t: (-len(t), t))[:5]
    texts = [t.decode("utf-8", errors="replace") for t in longest]
    shown = ", ".join(repr(t if len(t) <= 32 else t[:31] + "…") for t in texts)
    return "\n".join(
        [
            f"saved tokenizer to {out}",
            f"  time            {seconds:.2f} s",
            f"  peak memory     {own:.0f} MiB (largest child process {child:.0f} MiB)",
            f"  vocabulary      {len(vocab)} tokens ({len(specials)} special, 256 bytes, {len(merges)} merges)",
            f"  longest tokens  {shown or '(none)'}",
        ]
    )


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    specials = special_tokens_from(args)
    if not 0 < args.chunk_mb < math.inf:
        raise ConfigError(f"--chunk-mb must be a positive number, got {args.chunk_mb}")
    check_out_dir(args.out)
    start = time.perf_counter()
    workers = getattr(args, "num_workers", None)
    vocab, merges = train_bpe(args.input, args.vocab_size, specials, workers, chunk_bytes=int(args.chunk_mb * 2**20))
    with atomic_directory(args.out) as tmp:
        Tokenizer(vocab, merges, specials).save(tmp)
    print(summary(args.out, time.perf_counter() - start, vocab, merges, specials))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
