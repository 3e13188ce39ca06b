"""``lm-accounting``: parameter counts, FLOPs per token by matmul and an activation-memory estimate for a model.

    lm-accounting --preset tinystories-17m
    lm-accounting --config configs/owt.yaml --batch-size 16
    lm-accounting --all

The shape comes from a preset (``cs336_lm.nn.PRESETS``) or from the ``model`` section of an experiment config
(with its overrides; what only training needs, such as the data paths, may be unset, as in an imported run's
``config.yaml``); the tables are ``cs336_lm.nn.accounting.report``. GPT-2's published parameter counts are printed
beside the ``gpt2-*-like`` presets as a check.
"""

import argparse
import sys

from omegaconf import OmegaConf

from cs336_lm.cli import HelpFormatter, run_main
from cs336_lm.config import Config, ModelConfig, load_config
from cs336_lm.errors import ConfigError
from cs336_lm.nn import PRESETS, ModelArgs
from cs336_lm.nn.accounting import report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-accounting",
        description="Parameter, FLOP and activation-memory tables for a model preset or an experiment config.",
        formatter_class=HelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}")
    which.add_argument("--config", metavar="FILE", help="an experiment config (YAML); its model section is used")
    which.add_argument("--all", action="store_true", help="every preset")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, with --config")
    p.add_argument("--batch-size", type=int, default=8, help="sequences, for the activation estimate")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the model's context)")
    return p


def shapes(args: argparse.Namespace) -> list[tuple[str, ModelArgs]]:
    """``(name, shape)`` of each model to report."""
    if args.overrides and args.config is None:
        raise ConfigError("key=value overrides need --config")
    if args.config is not None:
        model = model_section(args.config, args.overrides)
        return [(args.config, model.args)]
    names = list(PRESETS) if args.all else [args.preset]
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return [(name, PRESETS[name]) for name in names]


def model_section(path: str, overrides: list[str]) -> ModelConfig:
    """The ``model`` section of the config file ``path`` with ``overrides`` applied. The fields outside it that have
    no default (the data paths, the output directory) are training's business and may be unset, as an imported
    run's ``config.yaml`` leaves them; the rest of the file is still checked against the schema."""
    try:
        return load_config(path, overrides).model
    except ConfigError as e:
        unread = _unread_required_keys()
        if not any(key in str(e) for key in unread):
            raise
    # the overrides parsed and merged above; a second error can only be about a value that is really wrong
    return load_config(path, [f"{key}=unread" for key in unread] + overrides).model


def _unread_required_keys() -> list[str]:
    """``data.train_path``, …: each field outside the model section that has no default."""
    schema = OmegaConf.structured(Config)
    keys = []
    for name in schema:
        if name != "model":
            keys += [f"{name}.{key}" for key in schema[name] if OmegaConf.is_missing(schema[name], key)]
    return keys


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or (args.seq_len is not None and args.seq_len < 1):
        raise ConfigError("--batch-size and --seq-len must be >= 1")
    tables = [report(name, shape, args.batch_size, args.seq_len) for name, shape in shapes(args)]
    print("\n\n".join(tables))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
