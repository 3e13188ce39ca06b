"""No command's output replaces what it reads: lm-generate --out, lm-perplexity --out and lm-plot --out onto an input
(the prompts file, the data, the run's metrics, config or checkpoints) end with one error line and exit 2, and the
input is untouched. A new file inside the run directory is fine."""

import json

import pytest
import torch

from cs336_lm.cli.generate import main as generate_main
from cs336_lm.cli.perplexity import main as perplexity_main
from cs336_lm.cli.plot import main as plot_main
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.run import RunDir
from cs336_lm.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run") / "run"
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    args = PRESETS["debug"].replace(vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    rundir = RunDir(root).create()
    tok.save(rundir.tokenizer_dir)
    rundir.save_checkpoint(TransformerLM.from_args(args), None, 1, None, config={"model": args.to_dict()})
    rundir.config_file.write_text(json.dumps({"model": args.to_dict()}))  # JSON is YAML
    rundir.metrics_file.write_text(json.dumps({"step": 1, "tokens": 10, "train_loss": 5.0, "lr": 0.1}) + "\n")
    return root


def refused(main, argv, capsys, victim):
    before = victim.read_bytes()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "input" in err[0], err
    assert victim.read_bytes() == before


def test_generate_out_onto_its_prompts_or_the_run(run, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Once\n")
    base = [run, "--prompts-file", prompts, "--max-new-tokens", "2", "--device", "cpu", "--threads", "1"]
    refused(generate_main, [*base, "--out", prompts], capsys, prompts)
    refused(generate_main, [*base, "--out", run / "config.yaml"], capsys, run / "config.yaml")
    latest = RunDir(run).latest()
    refused(generate_main, [*base, "--out", latest], capsys, latest)
    assert generate_main([str(a) for a in [*base, "--out", run / "completions.jsonl"]]) == 0


def test_perplexity_out_onto_its_data_or_the_runs_metrics(run, tmp_path, capsys):
    data = tmp_path / "valid.txt"
    data.write_text("Once upon a time there was a cat. " * 20)
    base = [run, "--data", data, "--context", "32", "--device", "cpu", "--threads", "1"]
    refused(perplexity_main, [*base, "--out", data], capsys, data)
    refused(perplexity_main, [*base, "--out", run / "metrics.jsonl"], capsys, run / "metrics.jsonl")
    assert perplexity_main([str(a) for a in [*base, "--out", run / "eval.jsonl"]]) == 0


def test_plot_out_onto_the_metrics_it_reads(run, capsys):
    pytest.importorskip("matplotlib")
    refused(plot_main, [run, "--out", run / "metrics.jsonl"], capsys, run / "metrics.jsonl")
