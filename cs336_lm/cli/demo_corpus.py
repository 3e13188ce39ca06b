"""``lm-demo-corpus``: write the tinytales story corpus (``train.txt`` and ``valid.txt``) into a directory.

The training split is drawn from ``--seed``, the validation split from a seed derived from it
(``"valid-<seed>"``), so the two never share a story. A ``corpus.json`` beside them records the parameters, sizes
and SHA-256 of the files; running again with the same parameters finds it and leaves the files alone when they
still match it (``--force`` rewrites them anyway; a file that no longer matches is rewritten, with a note).
"""

import argparse
import json
import math
import shutil
from pathlib import Path

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.data.download import sha256_file
from cs336_lm.errors import DataError, WriteError
from cs336_lm.fileio import atomic_write, output_directory
from cs336_lm.tinytales import GENERATOR_VERSION, write_corpus

MB = 1_000_000
MANIFEST = "corpus.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-demo-corpus",
        description="Write a deterministic corpus of short children's stories (train.txt, valid.txt).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--size-mb", type=float, required=True, help="size of train.txt in megabytes (10^6 bytes)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the training split")
    p.add_argument("--valid-mb", type=float, default=None, help="size of valid.txt in MB (default: 5%% of --size-mb)")
    p.add_argument("--force", action="store_true", help="rewrite even when the directory is up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def corpus_parameters(size_mb: float, seed: int, valid_mb: float | None) -> dict:
    """What determines the corpus bytes: ``{"generator_version", "seed", "train_bytes", "valid_bytes"}``."""
    if not 0 < size_mb < math.inf:
        raise DataError(f"--size-mb must be a positive number, got {size_mb}")
    valid_mb = size_mb / 20 if valid_mb is None else valid_mb
    if not 0 < valid_mb < math.inf:
        raise DataError(f"--valid-mb must be a positive number, got {valid_mb}")
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "train_bytes": int(size_mb * MB),
        "valid_bytes": int(valid_mb * MB),
    }


def is_up_to_date(out: Path, params: dict) -> bool:
    """True when ``out`` already holds a corpus written with exactly ``params``: files present, sizes and (in
    manifests that record them) SHA-256 as recorded. A file changed since is reported and the corpus rewritten."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    if not isinstance(manifest, dict) or manifest.get("parameters") != params:
        return False
    files, digests = manifest.get("files", {}), manifest.get("sha256", {})
    if not isinstance(files, dict) or not isinstance(digests, dict):
        return False
    if not all((out / name).is_file() and (out / name).stat().st_size == size for name, size in files.items()):
        return False
    changed = [
        name for name, digest in digests.items() if not (out / name).is_file() or sha256_file(out / name) != digest
    ]
    if changed:
        print(f"{out / changed[0]} differs from what {out / MANIFEST} records; rewriting the corpus")
    return not changed


def write_demo_corpus(out: Path, params: dict, progress: bool = True) -> dict:
    """Write ``train.txt``, ``valid.txt`` and ``corpus.json`` into ``out``; return the manifest.

    Each file is written atomically and the manifest last, so an interrupted write is never taken for an up-to-date
    corpus. A corpus larger than the free space is refused before anything is written; a directory created for
    it is removed again when writing fails.
    """
    with output_directory(out):
        free = shutil.disk_usage(out).free
        needed = params["train_bytes"] + params["valid_bytes"]
        if needed > free:
            raise WriteError(out, f"the corpus needs {needed / MB:,.1f} MB but the disk has {free / MB:,.1f} MB free")
        train = write_corpus(out / "train.txt", params["train_bytes"], params["seed"], progress)
        valid = write_corpus(out / "valid.txt", params["valid_bytes"], f"valid-{params['seed']}", progress)
        manifest = {
            "parameters": params,
            "files": {"train.txt": train["bytes"], "valid.txt": valid["bytes"]},
            "stories": {"train.txt": train["stories"], "valid.txt": valid["stories"]},
            "sha256": {name: sha256_file(out / name) for name in ("train.txt", "valid.txt")},
        }
        with atomic_write(out / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
    return manifest


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    params = corpus_parameters(args.size_mb, args.seed, args.valid_mb)
    if not args.force and is_up_to_date(args.out, params):
        print(f"{args.out} is up to date (same seed, sizes and contents); use --force to rewrite it")
        return 0
    manifest = write_demo_corpus(args.out, params, progress=not args.quiet)
    for name, size in manifest["files"].items():
        print(f"wrote {args.out / name}: {size / MB:.2f} MB, {manifest['stories'][name]} stories")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
