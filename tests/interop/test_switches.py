"""The recipe switches at the HF border: QK-norm leaves as ``Qwen3ForCausalLM`` and tied embeddings as
``tie_word_embeddings`` — transformers loads each folder offline and computes our logits within 1e-4 in fp32, and
``lm-import`` brings the same model back, bitwise — while a switch no transformers architecture computes is refused
by ``lm-export`` and ``lm-compare`` with one line naming it, and nothing is written."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cs336_lm.cli.compare import main as compare_main
from cs336_lm.cli.export import main as export_main
from cs336_lm.cli.import_ import main as import_main
from cs336_lm.interop.compare import compare
from cs336_lm.interop.export import export_run
from cs336_lm.interop.hf_llama import hf_problem, to_hf
from cs336_lm.interop.hf_tokenizer import write_hf_tokenizer
from cs336_lm.interop.import_ import import_hf
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.run import RunDir, load_run

from .conftest import fixture_path, tiny_run

PROMPT = "Once upon a time, there was a little dog named Max. He liked to run in the park."


def _random_gains(model: TransformerLM) -> None:
    with torch.no_grad():  # gains away from 1, so a norm that is misplaced or reordered shows up
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("switches", [{"qk_norm": True}, {"qk_norm": True, "tie_embeddings": True, "num_kv_heads": 2}])
def test_qk_norm_model_equals_hf_qwen3_in_memory(attention, switches):
    torch.manual_seed(0)
    model = TransformerLM(**{**PRESETS["debug"], **switches}, attention=attention).eval()
    _random_gains(model)
    hf = to_hf(model, attn_implementation="eager")
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    tokens = torch.randint(0, model.vocab_size, (2, model.context_length))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=0)
        positions = torch.arange(7, 7 + 20).expand(2, 20)
        torch.testing.assert_close(
            model(tokens[:, :20], positions), hf(tokens[:, :20], position_ids=positions).logits, atol=1e-4, rtol=0
        )


@pytest.fixture(scope="module")
def qwen3_run(tmp_path_factory, tokenizer):
    root = tiny_run(tmp_path_factory.mktemp("qk") / "run", tokenizer, qk_norm=True, tie_embeddings=True)
    loaded = load_run(root, "cpu")
    _random_gains(loaded.model)
    RunDir(root).save_checkpoint(loaded.model, None, 8, None, config=loaded.config)  # the run's latest
    return root


@pytest.fixture(scope="module")
def qwen3_export(tmp_path_factory, qwen3_run):
    out = tmp_path_factory.mktemp("qwen3") / "hf"
    export_run(qwen3_run, out)
    return out


def test_qk_norm_exports_as_qwen3_and_transformers_computes_the_same(qwen3_run, qwen3_export, tokenizer):
    from transformers import AutoModelForCausalLM

    config = json.loads((qwen3_export / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["model_type"] == "qwen3"
    assert config["tie_word_embeddings"] is True and config["use_sliding_window"] is False
    weights = load_file(qwen3_export / "model.safetensors")
    assert "lm_head.weight" not in weights and weights["model.layers.1.self_attn.q_norm.weight"].shape == (16,)
    hf = AutoModelForCausalLM.from_pretrained(qwen3_export, dtype=torch.float32).eval()
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    ours = load_run(qwen3_run, "cpu").model
    assert (ours.layers[1].attn.k_norm.weight != 1).all()  # the checkpoint with random gains
    ids = torch.tensor([tokenizer.encode(fixture_path("corpus.en").read_text(encoding="utf-8"))[:64]])
    with torch.inference_mode():
        assert (ours(ids) - hf(ids).logits).abs().max().item() <= 1e-4


def test_qwen3_export_imports_back_bitwise(qwen3_run, qwen3_export, tmp_path):
    result = import_hf(qwen3_export, tmp_path / "back")
    back, ours = load_run(tmp_path / "back", "cpu").model, load_run(qwen3_run, "cpu").model
    assert result.tied and back.args.architecture() == ours.args.architecture()
    assert back.args.qk_norm and back.lm_head.weight is back.token_embeddings.weight
    for name, w in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], w), name


def test_compare_agrees_with_the_qwen3_export(qwen3_run, qwen3_export):
    result = compare(qwen3_run, qwen3_export, PROMPT)
    assert result.first_divergence is None and all(s.max_diff <= 1e-4 for s in result.stages)


def test_import_of_a_qwen3_folder_saved_by_transformers(tokenizer, tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
    )
    hf = Qwen3ForCausalLM(config).eval()
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.3 if p.dim() == 1 else 0.05)
        if p.dim() == 1:
            p.data += 1.0
    hf.save_pretrained(tmp_path / "hf")
    write_hf_tokenizer(tokenizer, tmp_path / "hf", 128)
    result = import_hf(tmp_path / "hf", tmp_path / "run")
    assert result.model.qk_norm and not result.tied and result.model.kv_heads == 2
    ours = load_run(tmp_path / "run", "cpu").model
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.inference_mode():
        assert (ours(ids) - hf(ids).logits).abs().max().item() <= 1e-4


def test_import_refuses_a_qwen3_sliding_window(qwen3_export, tmp_path, capsys):
    folder = tmp_path / "hf"
    shutil.copytree(qwen3_export, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"use_sliding_window": True}))
    assert import_main([str(folder), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "use_sliding_window=true" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_tied_model_exports_tied_and_imports_tied(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    run = tiny_run(tmp_path / "run", tokenizer, tie_embeddings=True)
    result = export_run(run, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert result.tied and config["tie_word_embeddings"] is True and config["architectures"] == ["LlamaForCausalLM"]
    assert "lm_head.weight" not in load_file(tmp_path / "hf" / "model.safetensors")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ours = load_run(run, "cpu").model
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.inference_mode():
        assert (ours(ids) - hf(ids).logits).abs().max().item() <= 1e-4
    back = load_run(import_hf(tmp_path / "hf", tmp_path / "back").out, "cpu").model
    assert back.args.tie_embeddings and back.lm_head.weight is back.token_embeddings.weight
    assert torch.equal(back.lm_head.weight, ours.lm_head.weight)


UNEXPORTABLE = [
    ({"norm": "post"}, "model.norm=post", "pre-norm"),
    ({"norm": "none"}, "model.norm=none", "pre-norm"),
    ({"position": "nope"}, "model.position=nope", "RoPE"),
    ({"ffn": "silu"}, "model.ffn=silu", "SwiGLU"),
    ({"ffn": "relu2"}, "model.ffn=relu2", "SwiGLU"),
    ({"logit_softcap": 30.0}, "model.logit_softcap=30.0", "do not cap"),
]


@pytest.mark.parametrize(("switches", "named", "why"), UNEXPORTABLE, ids=[u[1] for u in UNEXPORTABLE])
def test_export_refuses_a_switch_hf_cannot_compute(tokenizer, tmp_path, capsys, switches, named, why):
    run = tiny_run(tmp_path / "run", tokenizer, **switches)
    assert export_main([str(run), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot export") and named in err and why in err and err.count("\n") == 1
    assert not (tmp_path / "hf").exists()
    with pytest.raises(ValueError, match=named):
        to_hf(load_run(run, "cpu").model)


def test_compare_refuses_a_run_hf_cannot_compute(tokenizer, exported, tmp_path, capsys):
    run = tiny_run(tmp_path / "run", tokenizer, norm="none")
    assert compare_main([str(run), str(exported), "--prompt", PROMPT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot compare") and "model.norm=none" in err and err.count("\n") == 1


def test_hf_problem_is_none_exactly_for_the_llama_and_qwen3_switches():
    debug = PRESETS["debug"]
    assert hf_problem(debug) is None
    assert hf_problem(debug.replace(qk_norm=True, tie_embeddings=True, attention="sdpa", kernels="torch")) is None
    for switches, named, _ in UNEXPORTABLE:
        assert named in (hf_problem(debug.replace(**switches)) or "")
