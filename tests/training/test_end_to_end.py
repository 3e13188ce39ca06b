"""From raw text to a trained, resumed model through the command-line entry points, on CPU in seconds.

Text (the project's tinytales generator) → ``lm-train-bpe`` → ``lm-tokenize`` → ``lm-train`` with
configs/debug.yaml stopped halfway → the loss went down → the same ``lm-train`` command continues from the
checkpoint → ``lm-generate`` samples from the run directory alone.
"""

import numpy as np

from cs336_lm.cli.generate import main as generate_main
from cs336_lm.cli.tokenize import main as tokenize_main
from cs336_lm.cli.train import main as train_main
from cs336_lm.cli.train_bpe import main as train_bpe_main
from cs336_lm.data import load_tokens
from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.tinytales import EOT, write_corpus
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training.metrics import read_metrics

from .conftest import DEBUG_CONFIG


def test_text_to_trained_model_and_resume(tmp_path, capsys):
    write_corpus(tmp_path / "train.txt", 60_000, seed=0, progress=False)
    write_corpus(tmp_path / "valid.txt", 8_000, seed="valid", progress=False)
    tokenizer = str(tmp_path / "tokenizer")
    bpe_args = [str(tmp_path / "train.txt"), "--out", tokenizer, "--vocab-size", "512", "--special-token", EOT]
    assert train_bpe_main([*bpe_args, "--num-workers", "1"]) == 0
    for split, text in (("train", "train.txt"), ("val", "valid.txt")):
        args = ["--tokenizer", tokenizer, str(tmp_path / text), "--out", str(tmp_path / f"{split}.npy")]
        assert tokenize_main([*args, "--num-workers", "1", "--quiet"]) == 0
    assert load_tokens(tmp_path / "train.npy").max() < 512

    run = tmp_path / "run"
    common = [
        "--config",
        str(DEBUG_CONFIG),
        f"data.train_path={tmp_path / 'train.npy'}",
        f"data.val_path={tmp_path / 'val.npy'}",
        f"data.tokenizer_dir={tmp_path / 'tokenizer'}",
        f"train.out_dir={run}",
        "train.device=cpu",
        "train.log_every=2",
    ]
    assert train_main([*common, "train.max_steps=20"]) == 0  # the debug config's 40 steps, stopped halfway
    first = read_metrics(run / "metrics.jsonl")
    losses = [r["loss"] for r in first if "loss" in r]
    val = [r["val_loss"] for r in first if "val_loss" in r]
    assert losses[-1] < losses[0] - 1.0, losses  # from ~ln(512) = 6.2 down
    assert len(val) == 1 and val[0] < losses[0] - 1.0
    assert "finished 20 steps" in capsys.readouterr().out

    assert train_main(common) == 0  # resume=auto continues the run to the config's max_steps
    out = capsys.readouterr().out
    assert "resuming from" in out and "step_00000020.pt at step 20" in out
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(2, 41, 2))
    assert read_checkpoint(RunDir(run).latest())["iteration"] == 40
    assert Tokenizer.from_directory(run / "tokenizer").vocab_size == 512
    assert np.isfinite([r.get("val_loss", 0.0) for r in read_metrics(run / "metrics.jsonl")]).all()

    capsys.readouterr()
    gen_args = [str(run), "--prompt", "Once upon a time", "--max-new-tokens", "8", "--seed", "0", "--device", "cpu"]
    assert generate_main(gen_args) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")
