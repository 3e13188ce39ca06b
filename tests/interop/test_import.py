"""``lm-import``: Llama folders written by ``transformers`` itself become runs that compute what HF computes.

The folders are made here: a random ``LlamaForCausalLM`` from a ``LlamaConfig`` (grouped-query attention, tied or
untied embeddings) saved with ``save_pretrained``, one file or sharded, plus tokenizer files. Everything we cannot
represent is refused with one ``error:`` line naming the field, exit status 2, and no output directory.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from cs336_lm.cli.import_ import main as import_main
from cs336_lm.interop.hf_tokenizer import write_hf_tokenizer
from cs336_lm.interop.import_ import import_hf
from cs336_lm.run import load_run
from cs336_lm.tokenizer import Tokenizer

from .conftest import fixture_path


def llama_folder(path, tokenizer: Tokenizer, *, tie=False, shard=None, vocab_size=None, **config):
    """A random LlamaForCausalLM saved by transformers (sharded when ``shard`` is a size), with our tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = {
        "vocab_size": vocab_size or tokenizer.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tie,
        "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0},
        **config,
    }
    model = LlamaForCausalLM(LlamaConfig(**settings)).eval()
    for p in model.parameters():  # random norms too, so a mix-up between the two norms of a block would show
        torch.nn.init.normal_(p, std=0.3 if p.dim() == 1 else 0.05)
        if p.dim() == 1:
            p.data += 1.0
    model.save_pretrained(path, **({"max_shard_size": shard} if shard else {}))
    write_hf_tokenizer(tokenizer, path, settings["max_position_embeddings"])
    return model


def assert_same_function(hf_model, run, tokenizer):
    ours = load_run(run, "cpu").model
    ids = torch.tensor([tokenizer.encode(fixture_path("corpus.en").read_text(encoding="utf-8"))[:100]])
    with torch.inference_mode():
        assert (ours(ids) - hf_model(ids).logits).abs().max().item() <= 1e-4


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("llama") / "llama"
    llama_folder(path, tokenizer)
    return path


def test_import_gqa_model(hf_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    result = import_hf(hf_dir, tmp_path / "run")
    m = result.model
    assert (m.num_heads, m.num_kv_heads, m.d_model, m.d_ff, m.rope_theta) == (8, 2, 64, 96, 5000.0)
    assert m.context_length == 128 and not result.tied and result.source_dtype == "float32"
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    assert_same_function(hf, tmp_path / "run", tokenizer)
    assert load_run(tmp_path / "run", "cpu").tokenizer.vocab == tokenizer.vocab


def test_import_sharded_and_tied(tokenizer, tmp_path):
    hf = llama_folder(tmp_path / "hf", tokenizer, tie=True, shard="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 2
    result = import_hf(tmp_path / "hf", tmp_path / "run")
    assert result.tied
    model = load_run(tmp_path / "run", "cpu").model
    assert torch.equal(model.lm_head.weight, model.token_embeddings.weight)
    assert_same_function(hf, tmp_path / "run", tokenizer)


def test_import_bf16_weights(tokenizer, tmp_path):
    llama_folder(tmp_path / "hf", tokenizer)
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    save_file(
        {k: v.to(torch.bfloat16) for k, v in weights.items()}, tmp_path / "hf" / "model.safetensors", {"format": "pt"}
    )
    result = import_hf(tmp_path / "hf", tmp_path / "run")
    assert result.source_dtype == "bfloat16"
    model = load_run(tmp_path / "run", "cpu").model
    assert model.lm_head.weight.dtype == torch.float32
    assert torch.equal(model.lm_head.weight, weights["lm_head.weight"].to(torch.bfloat16).float())


def test_gpt2_style_tokenizer_files(tmp_path):
    """vocab.json + merges.txt (GPT-2's own) with the special tokens named in special_tokens_map.json."""
    vocab, merges = fixture_path("gpt2_vocab.json"), fixture_path("gpt2_merges.txt")
    gpt2 = Tokenizer.from_files(vocab, merges, ["<|endoftext|>"])
    llama_folder(tmp_path / "hf", gpt2, hidden_size=16, intermediate_size=32, num_attention_heads=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "hf" / name).unlink()
    shutil.copy(vocab, tmp_path / "hf" / "vocab.json")
    shutil.copy(merges, tmp_path / "hf" / "merges.txt")
    import_hf(tmp_path / "hf", tmp_path / "run")
    back = Tokenizer.from_directory(tmp_path / "run" / "tokenizer")
    assert (back.vocab, back.merges, back.special_tokens) == (gpt2.vocab, gpt2.merges, gpt2.special_tokens)


def test_cli_summary(hf_dir, tmp_path, capsys):
    assert import_main([str(hf_dir), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'run'}: ") and "8 heads, 2 kv heads" in out


# ---- refusals: one line naming the field, exit 2, nothing written -----------------------------------------------


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_tokenizer(path, edit):
    data = json.loads((path / "tokenizer.json").read_text())
    edit(data)
    (path / "tokenizer.json").write_text(json.dumps(data))


def add_bias(path):
    weights = load_file(path / "model.safetensors")
    weights["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
    save_file(weights, path / "model.safetensors", {"format": "pt"})


def drop_lm_head(path):
    weights = load_file(path / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, path / "model.safetensors", {"format": "pt"})


def only_pickle(path):
    (path / "model.safetensors").rename(path / "pytorch_model.bin")


def orphan_token(path):
    """GPT-2-style files whose special tokens nothing names as special: they look like tokens no merge makes."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (path / name).unlink()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(path / "ours" / name, path / name)


def merges_out_of_order(path):
    edit_tokenizer(path, lambda d: d["model"].__setitem__("merges", d["model"]["merges"][::-1]))


REFUSALS = {
    "model_type": (lambda p: edit_json(p / "config.json", model_type="mistral"), "model_type='mistral'"),
    "rope_scaling": (
        lambda p: edit_json(
            p / "config.json", rope_parameters=None, rope_theta=1e4, rope_scaling={"rope_type": "llama3"}
        ),
        "rope_scaling",
    ),
    "rope_type": (
        lambda p: edit_json(p / "config.json", rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2}),
        "rope_parameters.rope_type='linear'",
    ),
    "attention_bias": (lambda p: edit_json(p / "config.json", attention_bias=True), "attention_bias=true"),
    "bias_tensor": (add_bias, "model.layers.0.self_attn.q_proj.bias: biases are not supported"),
    "hidden_act": (lambda p: edit_json(p / "config.json", hidden_act="gelu"), "hidden_act='gelu'"),
    "rms_norm_eps": (lambda p: edit_json(p / "config.json", rms_norm_eps=1e-6), "rms_norm_eps=1e-06"),
    "head_dim": (lambda p: edit_json(p / "config.json", head_dim=16), "head_dim=16"),
    "shape": (lambda p: edit_json(p / "config.json", intermediate_size=128), "mlp.gate_proj.weight has shape"),
    "vocab_size": (lambda p: edit_json(p / "config.json", vocab_size=300), "vocab_size=300"),
    "pickle": (only_pickle, "pytorch_model.bin, a pickle"),
    "no_lm_head": (drop_lm_head, "has no lm_head.weight and"),
    "added_token_id": (
        lambda p: edit_tokenizer(p, lambda d: d["added_tokens"][0].__setitem__("id", None)),
        "added_tokens[0] needs a non-empty content and an id",
    ),
    "no_config": (lambda p: (p / "config.json").unlink(), "has no config.json"),
    "no_tokenizer": (lambda p: (p / "tokenizer.json").unlink(), "has no tokenizer"),
    "wordpiece": (lambda p: edit_tokenizer(p, lambda d: d["model"].__setitem__("type", "WordPiece")), "model.type"),
    "normalizer": (lambda p: edit_tokenizer(p, lambda d: d.__setitem__("normalizer", {"type": "NFC"})), "normalizer"),
    "metaspace": (
        lambda p: edit_tokenizer(p, lambda d: d.__setitem__("pre_tokenizer", {"type": "Metaspace"})),
        "pre_tokenizer",
    ),
    "byte_fallback": (
        lambda p: edit_tokenizer(p, lambda d: d["model"].__setitem__("byte_fallback", True)),
        "model.byte_fallback",
    ),
    "added_token": (
        lambda p: edit_tokenizer(p, lambda d: d["added_tokens"][1].__setitem__("special", False)),
        "is not special",
    ),
    "merge_order": (merges_out_of_order, "before any merge makes it"),
    "orphan": (orphan_token, "comes from no merge and is not a special token"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals(hf_dir, tokenizer, tmp_path, capsys, case):
    edit, message = REFUSALS[case]
    folder = tmp_path / "hf"
    shutil.copytree(hf_dir, folder)
    tokenizer.save(folder / "ours")
    edit(folder)
    assert import_main([str(folder), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_refuses_missing_folder_and_existing_output(hf_dir, tmp_path, capsys):
    assert import_main([str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    assert import_main([str(hf_dir), "--out", str(tmp_path / "run")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]
    assert import_main([str(hf_dir), "--out", str(tmp_path / "run"), "--force"]) == 0
    assert not (tmp_path / "run" / "keep.txt").exists()
