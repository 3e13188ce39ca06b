"""A tiny study on configs/debug.yaml: byte-level inputs (as the trainer tests use), the overrides that shrink the
debug config to runs of a second, and a study directory whose runs are written, not trained, with losses from a
known law (``synthetic_study``)."""

import json
import math
from pathlib import Path

import pytest

from cs336_lm.config import to_yaml
from cs336_lm.data import write_tokens
from cs336_lm.scaling.study import load_study
from cs336_lm.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"
TEXT = (
    "Once upon a time there was a little cat who liked to play in the garden. The dog ran to the park and found a "
    "big red ball under a tree. Lily and her brother made a cake for their mother, and she smiled. "
)


@pytest.fixture
def tiny_inputs(tmp_path) -> list[str]:
    """Overrides of configs/debug.yaml: byte-level token files in ``tmp_path/inputs`` and a tiny, quick run."""
    root = tmp_path / "inputs"
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(root / "tokenizer")
    write_tokens(root / "train.npy", tok.encode(TEXT * 40), tok.vocab_size)
    write_tokens(root / "val.npy", tok.encode(TEXT * 6), tok.vocab_size)
    values = {
        "data.train_path": root / "train.npy",
        "data.val_path": root / "val.npy",
        "data.tokenizer_dir": root / "tokenizer",
        "model.vocab_size": 257,
        "model.context_length": 16,
        "train.batch_size": 4,
        "train.eval_batches": 2,
        "train.log_every": 10,
        "train.ckpt_every": 0,
        "train.device": "cpu",
        "train.threads": 1,
        "optim.warmup_iters": 2,
    }
    return [f"{k}={v}" for k, v in values.items()]


def law_loss(params: float, budget: float, n_opt: float) -> float:
    """The synthetic losses: L = 5·C^(−0.05) + 0.1·ln(N / N_opt)²."""
    return 5 * budget**-0.05 + 0.1 * math.log(params / n_opt) ** 2


def write_fake_runs(study_dir: Path, loss=law_loss) -> dict[float, float]:
    """Write every planned run's config.yaml and a metrics.jsonl ending at its last step with ``loss(N, C, N_opt)``,
    N_opt the geometric mean of the budget's planned sizes; returns N_opt by budget."""
    study = load_study(study_dir)
    n_opt = {}
    for budget in study.budgets:
        sizes = [r.params for r in study.runs if r.budget == budget]
        n_opt[budget] = math.exp(sum(map(math.log, sizes)) / len(sizes))
    for run in study.runs:
        folder = study.run_dir(run)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(to_yaml(study.run_config(run)))
        value = loss(run.params, run.budget, n_opt[run.budget])
        records = [{"step": run.steps, "loss": value, "val_loss": value}]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return n_opt
