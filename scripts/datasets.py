"""Real-dataset recipes (``make tinystories``, ``make owt``): download, train the tokenizer, tokenize, train.

``python scripts/datasets.py tinystories`` fetches TinyStories V2 (GPT-4 stories, train and valid text files)
from the Hugging Face hub, trains a 10K BPE tokenizer, tokenizes both splits and runs
``lm-train --config configs/tinystories.yaml``; ``owt`` does the same with the CS336 OpenWebText sample, a
32K tokenizer and ``configs/owt.yaml``. Downloads resume where they stopped (run the command again after an
interruption), and every file's SHA-256 is recorded in ``DATA_DIR/SHA256SUMS`` on first download and checked
on every later run. As in ``scripts/demo.py``, steps that already finished with the same inputs are skipped,
and ``key=value`` arguments go to ``lm-train``. ``--mirror`` replaces ``https://huggingface.co`` (for a mirror,
or a local server in the tests). Without network, ``--from DIR`` takes the files from a directory they were copied
into by hand (checked against ``SHA256SUMS`` like a download); a download that cannot reach the host says so.
"""

from __future__ import annotations

import argparse
import http.client
import sys
from dataclasses import dataclass
from pathlib import Path

from demo import Ledger, run_cli, section

from cs336_lm.data.download import RemoteFile, decompress, decompressed_name, download
from cs336_lm.errors import DataError, LMError

HUB = "https://huggingface.co"


@dataclass(frozen=True)
class Recipe:
    """One dataset: its files (train first, then valid), tokenizer size, config and output directory name."""

    files: tuple[RemoteFile, RemoteFile]
    vocab_size: int
    config: str
    name: str


# No SHA-256 digests are published beside these files, so none is pinned here: the first download records
# each file's digest in DATA_DIR/SHA256SUMS and later runs verify against it.
RECIPES = {
    "tinystories": Recipe(
        files=(
            RemoteFile(f"{HUB}/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-train.txt",
                       "TinyStoriesV2-GPT4-train.txt"),
            RemoteFile(f"{HUB}/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt",
                       "TinyStoriesV2-GPT4-valid.txt"),
        ),
        vocab_size=10_000, config="configs/tinystories.yaml", name="tinystories",
    ),
    "owt": Recipe(
        files=(
            RemoteFile(f"{HUB}/datasets/stanford-cs336/owt-sample/resolve/main/owt_train.txt.gz", "owt_train.txt.gz"),
            RemoteFile(f"{HUB}/datasets/stanford-cs336/owt-sample/resolve/main/owt_valid.txt.gz", "owt_valid.txt.gz"),
        ),
        vocab_size=32_000, config="configs/owt.yaml", name="owt",
    ),
}  # fmt: skip

STAGES = ("download", "bpe", "tokenize", "train")


def read_sums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` (``sha256sum`` format: ``<hex>  <name>`` per line) as ``{name: hex}``."""
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        if name:
            sums[name] = digest
    return sums


def write_sums(path: Path, sums: dict[str, str]) -> None:
    path.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())), encoding="utf-8")


COMPRESSED = (".gz", ".xz", ".bz2")


def fetch(recipe: Recipe, args: argparse.Namespace) -> list[Path]:
    """Download (resuming) and decompress the recipe's files into ``args.data_dir``, or take them from
    ``args.from_dir``; return the plain text paths."""
    data = args.data_dir
    sums_path = data / "SHA256SUMS"
    sums = read_sums(sums_path)
    texts = []
    for remote in recipe.files:
        url = remote.url.replace(HUB, args.mirror.rstrip("/")) if args.mirror else remote.url
        # the file as fetched (a download, or the copy in --from) and the plain text it gives
        dest = data / remote.filename if args.from_dir is None else copied_in(remote, args.from_dir)
        text = data / decompressed_name(dest).name if dest.suffix in COMPRESSED else dest
        if text != dest and text.exists() and not (args.from_dir is None and dest.exists()):
            print(f"{text} already decompressed")
            texts.append(text)
            continue
        print(f"{url if args.from_dir is None else dest}\n  -> {text}", flush=True)
        digest = download(url, dest, sha256=remote.sha256 or sums.get(dest.name))  # an existing file is only checked
        if dest.name not in sums:
            print(f"  sha256 {digest} (recorded in {sums_path})")
            sums[dest.name] = digest
            data.mkdir(parents=True, exist_ok=True)
            write_sums(sums_path, sums)
        if text != dest:
            decompress(dest, text)
            if not args.keep_archives and args.from_dir is None:
                dest.unlink()
        texts.append(text)
    return texts


def copied_in(remote: RemoteFile, from_dir: Path) -> Path:
    """The recipe's file in ``from_dir``, as downloaded (``owt_train.txt.gz``) or already decompressed."""
    names = [remote.filename]
    if Path(remote.filename).suffix in COMPRESSED:
        names.append(decompressed_name(remote.filename).name)
    for name in names:
        if (from_dir / name).is_file():
            return from_dir / name
    raise DataError(f"--from {from_dir}: no {' or '.join(names)} there (the file {remote.url} serves)")


def offline_hint(recipe: Recipe, error: LMError) -> str:
    """For a download that could not reach its host: how to go on without network."""
    if not isinstance(error.__cause__, OSError | http.client.HTTPException):
        return ""  # a checksum mismatch, a bad --from directory: nothing to do with the network
    names = " and ".join(remote.filename for remote in recipe.files)
    return (
        f"; without network, copy {names} (fetched elsewhere) into a directory and run again with --from DIR "
        f'(make {recipe.name} ARGS="--from DIR"; docs/datasets.md), or give a reachable host with --mirror URL'
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Download a real dataset, train its tokenizer, tokenize it and train on it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dataset", choices=sorted(RECIPES), help="which recipe")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where downloads and outputs go")
    p.add_argument("--run-dir", type=Path, default=None, help="lm-train out_dir; None keeps the config's train.out_dir")
    p.add_argument("--until", choices=STAGES, default="train", help="stop after this stage")
    p.add_argument("--mirror", default=None, help=f"replace {HUB} in the download URLs")
    p.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="take the files from DIR (copied in by hand; used in place, checked against SHA256SUMS), no download",
    )
    p.add_argument(
        "--vocab-size", type=int, default=None, help="tokenizer size; None takes the recipe's (10000 / 32000)"
    )
    p.add_argument("--keep-archives", action="store_true", help="keep .gz files after decompressing them")
    p.add_argument("--num-workers", type=int, default=None, help="processes for lm-train-bpe and lm-tokenize")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="lm-train config overrides")
    return p


def recipe_steps(recipe: Recipe, args: argparse.Namespace, train_txt: Path, valid_txt: Path) -> list[tuple]:
    """``(stage, title, command, arguments, inputs, outputs)`` of every step after the download."""
    out = args.data_dir / recipe.name
    tokenizer, train_npy, val_npy = out / "tokenizer", out / "train.npy", out / "val.npy"
    workers = ["--num-workers", str(args.num_workers)] if args.num_workers else []
    vocab_size = args.vocab_size or recipe.vocab_size
    bpe_args = [str(train_txt), "--vocab-size", str(vocab_size), "--special-token", "<|endoftext|>"]
    train_args = ["--config", recipe.config, f"data.train_path={train_npy}", f"data.val_path={val_npy}"]
    train_args += [f"data.tokenizer_dir={tokenizer}", f"model.vocab_size={vocab_size}"]
    train_args += [f"train.out_dir={args.run_dir}"] if args.run_dir else []
    return [
        ("bpe", "Train the tokenizer", "lm-train-bpe", [*bpe_args, "--out", str(tokenizer), *workers],
         [train_txt], [tokenizer / "vocab.json"]),
        ("tokenize", "Tokenize train", "lm-tokenize", ["--tokenizer", str(tokenizer), str(train_txt),
         "--out", str(train_npy), *workers], [tokenizer, train_txt], [train_npy]),
        ("tokenize", "Tokenize valid", "lm-tokenize", ["--tokenizer", str(tokenizer), str(valid_txt),
         "--out", str(val_npy), *workers], [tokenizer, valid_txt], [val_npy]),
        ("train", "Train the model", "lm-train", [*train_args, *args.overrides], [], []),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    recipe = RECIPES[args.dataset]
    section(f"Download {args.dataset}", 1, 4)
    try:
        train_txt, valid_txt = fetch(recipe, args)
    except LMError as e:
        print(f"error: {e}{offline_hint(recipe, e)}", file=sys.stderr)
        return 2
    ledger = Ledger(args.data_dir / recipe.name / "pipeline.json")
    for stage, title, command, cli_args, inputs, outputs in recipe_steps(recipe, args, train_txt, valid_txt):
        if STAGES.index(stage) > STAGES.index(args.until):
            break
        section(title, STAGES.index(stage) + 1, 4)
        if outputs and ledger.done(title, cli_args, inputs, outputs):
            print(f"(up to date: {', '.join(map(str, outputs))} — skipped)")
            continue
        ledger.record(title, cli_args, inputs, finished=False)
        run_cli(command, cli_args)
        ledger.record(title, cli_args, inputs, finished=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
