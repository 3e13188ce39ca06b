"""Accounting against things it did not compute: model.parameters(), torch's FLOP counter, autograd's
saved tensors, GPT-2's published parameter counts (and HF's GPT2 model when installed), and the CLI."""

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336_lm.cli.accounting import main
from cs336_lm.nn import PRESETS, ModelArgs, TransformerLM
from cs336_lm.nn import functional as F
from cs336_lm.nn.accounting import (
    PUBLISHED_GPT2,
    activation_bytes,
    forward_flops,
    gpt2_params,
    param_counts,
    training_flops_per_token,
)


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_counts_match_model_parameters(name):
    model = TransformerLM(**PRESETS[name], device="meta")  # no memory, shapes only
    counts = param_counts(PRESETS[name])
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["non_embedding"] == counts["total"] - model.token_embeddings.weight.numel()
    attn = sum(p.numel() for n, p in model.named_parameters() if ".attn." in n)
    ffn = sum(p.numel() for n, p in model.named_parameters() if ".ffn." in n)
    assert (counts["attention"], counts["ffn"]) == (attn, ffn)


SWITCHES = [
    {"ffn": "silu"},
    {"ffn": "relu2", "d_ff": 256},
    {"norm": "none"},
    {"norm": "post", "qk_norm": True},
    {"tie_embeddings": True},
    {"position": "nope", "logit_softcap": 30.0},
    {"norm": "none", "ffn": "relu2", "qk_norm": True, "tie_embeddings": True, "num_kv_heads": 2},
]


@pytest.mark.parametrize("switches", SWITCHES, ids=str)
def test_param_counts_of_each_switch_match_the_built_model(switches):
    args = PRESETS["debug"].replace(**switches)
    model = TransformerLM.from_args(args, device="meta")
    counts = param_counts(args)
    assert counts["total"] == sum(p.numel() for p in model.parameters())  # a tied matrix once
    assert counts["non_embedding"] == counts["total"] - model.token_embeddings.weight.numel()
    attn = sum(p.numel() for n, p in model.named_parameters() if ".attn." in n)
    ffn = sum(p.numel() for n, p in model.named_parameters() if ".ffn." in n)
    norms = sum(p.numel() for n, p in model.named_parameters() if ".ln" in n or n.startswith("ln_final"))
    assert (counts["attention"], counts["ffn"], counts["norms"]) == (attn, ffn, norms)
    assert counts["lm_head"] == (0 if args.tie_embeddings else model.lm_head.weight.numel())


def test_non_gated_ffn_at_4_d_model_matches_swiglu_parameters():
    # the CS336 handout's matching: SwiGLU at d_ff = 8/3·d has 3·d·d_ff = 8·d², a two-matrix FFN at 4·d the same
    swiglu = ModelArgs.from_dict(PRESETS["debug"]).replace(d_model=96, d_ff=256)
    silu = swiglu.replace(ffn="silu", d_ff=4 * 96)
    assert param_counts(swiglu)["ffn"] == param_counts(silu)["ffn"]


@pytest.mark.parametrize("switches", SWITCHES, ids=str)
def test_forward_flops_of_each_switch_match_torch_flop_counter(switches):
    args = PRESETS["debug"].replace(**switches)
    model = TransformerLM.from_args(args, device="meta")
    tokens = torch.randint(0, args.vocab_size, (2, 24), device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(tokens)
    assert counter.get_total_flops() == 2 * forward_flops(args, 24)["total"]


def test_tinystories_preset_is_the_cs336_shape():
    assert param_counts(PRESETS["tinystories-17m"])["non_embedding"] == 17_576_448


@pytest.mark.parametrize("name, seq", [("debug", 64), ("debug", 17), ("tinystories-17m", 32)])
def test_forward_flops_match_torch_flop_counter(name, seq):
    cfg = PRESETS[name]
    model = TransformerLM(**cfg, device="meta")  # the counter needs shapes only
    tokens = torch.randint(0, cfg["vocab_size"], (2, seq), device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(tokens)
    shape = ModelArgs.from_dict(cfg)
    assert counter.get_total_flops() == 2 * forward_flops(shape, seq)["total"]
    assert training_flops_per_token(shape, seq) == 3 * forward_flops(shape, seq)["total"] / seq


@pytest.mark.parametrize("switches", [{}, *SWITCHES], ids=str)
def test_activation_estimate_within_2_percent_of_saved_tensors(switches):
    cfg = PRESETS["debug"].replace(**switches)
    model = TransformerLM(**cfg)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    tokens = torch.randint(0, cfg["vocab_size"], (3, 64))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(tokens), tokens)
    estimate = activation_bytes(cfg, batch_size=3, seq_len=64)
    assert abs(estimate - sum(saved.values())) / sum(saved.values()) < 0.02


@pytest.mark.parametrize("name", list(PUBLISHED_GPT2))
def test_gpt2_formula_matches_published_counts(name):
    assert gpt2_params(PRESETS[name]) == PUBLISHED_GPT2[name]


def test_gpt2_formula_matches_hf_gpt2_and_shares_our_attention_and_embeddings():
    transformers = pytest.importorskip("transformers")
    s = PRESETS["gpt2-small-like"]
    config = transformers.GPT2Config(
        vocab_size=s.vocab_size,
        n_positions=s.context_length,
        n_embd=s.d_model,
        n_layer=s.num_layers,
        n_head=s.num_heads,
    )
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(config)
    assert sum(p.numel() for p in hf.parameters()) == gpt2_params(s)
    # What the two architectures share exactly: the token embedding and the attention weight matrices.
    hf_attn = sum(p.numel() for n, p in hf.named_parameters() if ".attn." in n and n.endswith("weight"))
    assert hf_attn == param_counts(s)["attention"]
    assert hf.transformer.wte.weight.numel() == param_counts(s)["token_embeddings"]


def test_cli_prints_tables(capsys):
    assert main(["--preset", "tinystories-17m"]) == 0
    out = capsys.readouterr().out
    assert "22,696,448" in out and "lm_head" in out and "training (3x fwd)" in out
    assert main(["--all"]) == 0
    assert "published 1,557,611,200" in capsys.readouterr().out


def test_cli_reads_the_model_section_of_a_config_with_overrides(capsys):
    config = str(Path(__file__).resolve().parents[2] / "configs" / "tinystories.yaml")
    assert main(["--config", config]) == 0
    assert "22,696,448" in capsys.readouterr().out  # the tinystories-17m preset the config names
    assert main(["--config", config, "model.num_layers=8"]) == 0
    expected = param_counts(ModelArgs.from_dict({**PRESETS["tinystories-17m"], "num_layers": 8}))["total"]
    assert f"{expected:,}" in capsys.readouterr().out
    switches = ["model.ffn=silu", "model.d_ff=2048", "model.tie_embeddings=true", "model.qk_norm=true"]
    assert main(["--config", config, *switches]) == 0
    args = PRESETS["tinystories-17m"].replace(ffn="silu", d_ff=2048, tie_embeddings=True, qk_norm=True)
    out = capsys.readouterr().out
    assert f"{param_counts(args)['total']:,}" in out and "ffn='silu'" in out
    assert param_counts(args)["total"] == sum(
        p.numel() for p in TransformerLM.from_args(args, device="meta").parameters()
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "gpt5"], "error: unknown preset 'gpt5'"),
        (["--preset", "debug", "model.d_model=8"], "error: key=value overrides need --config"),
        (["--config", "/nonexistent.yaml"], "error: config file not found"),
        (["--preset", "debug", "--batch-size", "0"], "error: --batch-size"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
