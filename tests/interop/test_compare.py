"""``lm-compare``: a faithful export agrees at every stage; a deliberately broken one is caught at its layer."""

import shutil

import pytest
from safetensors.torch import load_file, save_file

from cs336_lm.cli.compare import main as compare_main
from cs336_lm.interop.compare import compare, format_table
from cs336_lm.interop.hf_llama import half_split_to_adjacent

PROMPT = "Once upon a time, there was a little dog named Max. He liked to run in the park."


def test_faithful_export_agrees(run_dir, exported):
    result = compare(run_dir, exported, PROMPT)
    names = [s.name for s in result.stages]
    assert names == [
        "embeddings",
        "layer 0 attention",
        "layer 0 output",
        "layer 1 attention",
        "layer 1 output",
        "final norm",
        "logits",
    ]
    assert result.first_divergence is None and all(s.max_diff <= 1e-4 for s in result.stages)
    assert result.stages[0].max_diff == 0.0 and all(s.max_ref > 0 for s in result.stages)
    assert "HF's tokenizer gives the same" in result.notes[0]
    assert format_table(result).splitlines()[-1].startswith("all 7 stages agree within atol 0.0001")


def test_broken_export_names_the_layer(run_dir, exported, tmp_path, capsys):
    """Layer 1's query rows left in our adjacent-pair order: RoPE rotates the wrong pairs there."""
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    weights = load_file(exported / "model.safetensors")
    name = "model.layers.1.self_attn.q_proj.weight"
    weights[name] = half_split_to_adjacent(weights[name], 4).contiguous()
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    assert compare_main([str(run_dir), str(broken), "--prompt", PROMPT]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines() if line.startswith(("layer", "emb"))}
    assert rows["layer 1 attention"].endswith("<- first divergence")
    assert not rows["layer 0 output"].endswith(("divergence", "tolerance"))
    assert rows["layer 1 output"].endswith("beyond tolerance")
    assert out.splitlines()[-1].startswith("diverged: layer 1 attention is the first stage beyond")


def test_cli_agrees_and_exits_zero(run_dir, exported, capsys):
    assert compare_main([str(run_dir), str(exported), "--prompt", "The cat", "--atol", "1e-5"]) == 0
    assert "all 7 stages agree" in capsys.readouterr().out


def test_cli_threads_1_runs_and_is_stated_on_stderr(run_dir, exported, capsys):
    assert compare_main([str(run_dir), str(exported), "--prompt", "The cat", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "all 7 stages agree" in captured.out and "threads" not in captured.out
    assert captured.err.splitlines()[-1] == "torch CPU threads: 1 (--threads)"  # after transformers' loading bar


def test_tolerance_zero_flags_rounding(run_dir, exported):
    result = compare(run_dir, exported, PROMPT, atol=0.0, rtol=0.0)
    assert result.stages[0].ok  # embeddings are copied exactly
    assert result.first_divergence is not None  # fp32 sums in another order differ in the last bits


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", ""], "encodes to no tokens"),
        (["--prompt", "word " * 100], "the model's context is 64"),
        (["--prompt", "x", "--atol", "-1"], "--atol and --rtol must be >= 0"),
    ],
)
def test_bad_input(run_dir, exported, capsys, args, message):
    assert compare_main([str(run_dir), str(exported), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_other_shapes_and_missing_folders(run_dir, exported, tokenizer, tmp_path, capsys):
    from .conftest import tiny_run

    other = tiny_run(tmp_path / "other", tokenizer, num_layers=3)
    assert compare_main([str(other), str(exported), "--prompt", "x"]) == 2
    assert "the HF model has 2 layers, the run 3" in capsys.readouterr().err
    assert compare_main([str(run_dir), str(tmp_path / "nothing"), "--prompt", "x"]) == 2
    assert "is not a directory" in capsys.readouterr().err
