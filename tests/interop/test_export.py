"""``lm-export``: transformers loads the folder offline and computes what we compute; ``lm-import`` brings it back.

Checked against ``transformers`` itself: ``AutoTokenizer`` gives our ids on the fixture texts (special tokens
included) and decodes them back, ``AutoModelForCausalLM`` gives our logits within 1e-4 in fp32 and greedy
``generate`` our tokens; export then import is bitwise the original (weights and tokenizer files).
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from cs336_lm.cli.export import main as export_main
from cs336_lm.cli.generate import main as generate_main
from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.interop.export import export_run
from cs336_lm.interop.hf_llama import adjacent_to_half_split, half_split_to_adjacent
from cs336_lm.interop.import_ import import_hf
from cs336_lm.run import load_run

from .conftest import SPECIALS, fixture_path, tiny_run

FIXTURE_TEXTS = ["corpus.en", "tinystories_sample.txt", "address.txt", "german.txt"]


@pytest.fixture(scope="module")
def hf_model(exported):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def hf_tokenizer(exported):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(exported)


def test_folder_contents(exported, run_dir):
    names = sorted(p.name for p in exported.iterdir())
    assert names == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (4, 2, 16)
    assert config["rope_theta"] == 10000.0 and config["rope_parameters"]["rope_theta"] == 10000.0
    assert config["rms_norm_eps"] == 1e-5 and config["tie_word_embeddings"] is False
    loaded = load_run(run_dir, "cpu")
    assert config["vocab_size"] == loaded.model.vocab_size and config["max_position_embeddings"] == 64
    ids = list(loaded.tokenizer.special_token_ids.values())
    assert json.loads((exported / "generation_config.json").read_text())["eos_token_id"] == ids
    weights = load_file(exported / "model.safetensors")
    assert len(weights) == 3 + 2 * 9 and all(w.dtype == torch.float32 for w in weights.values())
    ours = loaded.model.state_dict()
    q = ours["layers.1.attn.q_proj.weight"]
    assert torch.equal(weights["model.layers.1.self_attn.q_proj.weight"], adjacent_to_half_split(q, 4))
    assert torch.equal(half_split_to_adjacent(adjacent_to_half_split(q, 4), 4), q)


@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_hf_tokenizer_gives_our_ids(hf_tokenizer, tokenizer, name):
    text = fixture_path(name).read_text(encoding="utf-8")
    text = f"{SPECIALS[0]}{text[:2000]}{SPECIALS[1]} x{SPECIALS[0]}{SPECIALS[0]}\n\n  {text[-500:]}"
    ids = tokenizer.encode(text)
    assert hf_tokenizer.encode(text) == ids
    assert hf_tokenizer(text)["input_ids"] == ids  # no BOS or EOS added
    assert hf_tokenizer.decode(ids) == tokenizer.decode(ids) == text


def test_hf_logits_match_ours(hf_model, run_dir, tokenizer):
    ours = load_run(run_dir, "cpu").model
    ids = torch.tensor([tokenizer.encode(fixture_path("corpus.en").read_text(encoding="utf-8"))[:64]])
    with torch.inference_mode():
        diff = (ours(ids) - hf_model(ids).logits).abs().max().item()
    assert diff <= 1e-4


def test_greedy_generate_gives_our_tokens(hf_model, run_dir, tokenizer):
    loaded = load_run(run_dir, "cpu")
    stop = tuple(tokenizer.special_token_ids.values())
    prompts = [tokenizer.encode("Once upon a time"), tokenizer.encode("The dog said")]
    params = SamplingParams(temperature=0.0, max_new_tokens=24, stop_ids=stop)
    ours = Engine(loaded.model).generate(prompts, params)
    for prompt, completion in zip(prompts, ours, strict=True):
        out = hf_model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)[0, len(prompt) :].tolist()
        if out and out[-1] in stop:
            out = out[:-1]  # transformers keeps the end-of-sequence token, our engine leaves it out
        assert out == completion.tokens
    assert sum(len(c.tokens) for c in ours) >= 10  # not two empty completions


def test_export_then_import_is_bitwise(exported, run_dir, tmp_path):
    result = import_hf(exported, tmp_path / "back")
    assert result.checkpoint == tmp_path / "back" / "checkpoints" / "step_00000000.pt"
    original, back = load_run(run_dir, "cpu"), load_run(tmp_path / "back", "cpu")
    a, b = original.model.state_dict(), back.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert back.iteration == 0 and original.model.config() == back.model.config()
    for name in ("vocab.json", "merges.txt", "special_tokens.json"):
        assert (run_dir / "tokenizer" / name).read_bytes() == (tmp_path / "back" / "tokenizer" / name).read_bytes()
    assert (tmp_path / "back" / "checkpoints" / "latest").read_text().strip() == "step_00000000.pt"
    assert "init_from" in (tmp_path / "back" / "config.yaml").read_text()


def test_imported_run_generates(exported, tmp_path, capsys):
    import_hf(exported, tmp_path / "back")
    args = [str(tmp_path / "back"), "--prompt", "Once upon a time", "--max-new-tokens", "5", "--temperature", "0"]
    assert generate_main([*args, "--device", "cpu", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")


def test_bf16_export(run_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    export_run(run_dir, tmp_path / "hf", dtype="bf16")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    assert all(w.dtype == torch.bfloat16 for w in weights.values())
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "hf").dtype == torch.bfloat16


def test_tied_embeddings_round_trip(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    run = tiny_run(tmp_path / "run", tokenizer, tie=True)
    export_run(run, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["tie_word_embeddings"] is True
    assert "lm_head.weight" not in load_file(tmp_path / "hf" / "model.safetensors")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    ours = load_run(run, "cpu").model
    ids = torch.tensor([tokenizer.encode("Once upon a time there was a cat")])
    with torch.inference_mode():
        assert (ours(ids) - hf(ids).logits).abs().max().item() <= 1e-4
    result = import_hf(tmp_path / "hf", tmp_path / "back")
    back = load_run(tmp_path / "back", "cpu").model
    assert result.tied and torch.equal(back.lm_head.weight, back.token_embeddings.weight)
    assert torch.equal(back.lm_head.weight, ours.lm_head.weight)


def test_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    assert export_main([str(run_dir), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"wrote {out}: config.json") and "(iteration 7)" in stdout
    # an existing folder is not overwritten without --force, and is left as it was
    before = (out / "model.safetensors").read_bytes()
    assert export_main([str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "--force" in err and err.count("\n") == 1
    assert (out / "model.safetensors").read_bytes() == before
    assert export_main([str(run_dir), "--out", str(out), "--force", "--dtype", "fp16"]) == 0
    assert load_file(out / "model.safetensors")["lm_head.weight"].dtype == torch.float16


def test_cli_errors_leave_nothing(tmp_path, capsys):
    assert export_main([str(tmp_path / "missing"), "--out", str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    (tmp_path / "file").write_text("x")
    assert export_main([str(tmp_path / "missing"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        export_main(["--help"])
    assert "(default: fp32)" in capsys.readouterr().out


def test_broken_safetensors_is_one_line(exported, tmp_path, capsys):
    """A model.safetensors of the wrong shapes is refused by lm-import, naming the tensor."""
    import shutil

    from cs336_lm.cli.import_ import main as import_main

    shutil.copytree(exported, tmp_path / "hf")
    weights = load_file(exported / "model.safetensors")
    weights["model.layers.0.mlp.up_proj.weight"] = weights["model.layers.0.mlp.up_proj.weight"][:-1].clone()
    save_file(weights, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    assert import_main([str(tmp_path / "hf"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "model.layers.0.mlp.up_proj.weight has shape (127, 64)" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_lm_generate_greedy_alone_equals_transformers_greedy_on_the_export(attention, tokenizer, tmp_path, capsys):
    # the trust check of a demo run, on a small one: one prompt alone through lm-generate (the engine's lone-sequence
    # path, whatever attention backend the run was trained with) gives the tokens of transformers' greedy decoding
    from transformers import AutoModelForCausalLM

    from cs336_lm.cli.generate import main as generate_main
    from cs336_lm.interop.export import export_run

    from .conftest import tiny_run

    run = tiny_run(tmp_path / "run", tokenizer, seed=3, attention=attention)
    export_run(run, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    for prompt in ("Once upon a time", "The dog"):
        ids = tokenizer.encode(prompt)
        args = [str(run), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "40", "--device", "cpu"]
        assert generate_main(args) == 0
        printed = capsys.readouterr().out
        out = hf.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)[0, len(ids) :].tolist()
        stops = set(tokenizer.special_token_ids.values())
        hf_ids = out[: next((i for i, t in enumerate(out) if t in stops), len(out))]
        assert printed.rstrip("\n") == (prompt + tokenizer.decode(hf_ids)).rstrip("\n")  # lm-generate ends a line
