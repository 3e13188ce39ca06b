"""The recipe switches of ``ModelArgs`` (``norm``, ``position``, ``ffn``, ``qk_norm``, ``tie_embeddings``,
``logit_softcap``): each one's state_dict keys and shapes, its equation against a naive version written here, a
training step with every parameter reached, the tie surviving ``.to``, a checkpoint and an optimizer step, and bad
values refused by the model and by the config with the field's name. The default model's HF parity is
tests/nn/test_transformer.py's; decoding against the full forward is tests/engine/test_oracle.py's."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF

from cs336_lm.config import load_config
from cs336_lm.errors import ConfigError
from cs336_lm.nn import PRESETS, ModelArgs, MultiHeadSelfAttention, TransformerBlock, TransformerLM
from cs336_lm.nn import functional as F
from cs336_lm.nn.layers import FeedForward, SwiGLU, make_ffn

DEBUG = PRESETS["debug"]
D, D_FF, V, HEADS = DEBUG.d_model, DEBUG.d_ff, DEBUG.vocab_size, DEBUG.num_heads
D_HEAD = D // HEADS

SWITCHES = {
    "post": {"norm": "post"},
    "no-norm": {"norm": "none"},
    "nope": {"position": "nope"},
    "silu": {"ffn": "silu"},
    "relu2": {"ffn": "relu2"},
    "qk-norm": {"qk_norm": True},
    "tied": {"tie_embeddings": True},
    "softcap": {"logit_softcap": 5.0},
    "all": {
        "norm": "post",
        "position": "nope",
        "ffn": "relu2",
        "qk_norm": True,
        "tie_embeddings": True,
        "logit_softcap": 30.0,
    },
}


def _model(seed=0, **switches) -> TransformerLM:
    torch.manual_seed(seed)
    model = TransformerLM.from_args(DEBUG.replace(**switches))
    with torch.no_grad():  # gains away from 1, so a norm that is skipped or misplaced shows up
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model


def _tokens(batch=2, seq=12, seed=1):
    return torch.randint(0, V, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(t.shape) for k, t in model.state_dict().items()}


# ---- state_dict keys and shapes ------------------------------------------------------------------------------------


def test_defaults_are_the_llama_block():
    args = ModelArgs.from_dict(DEBUG)
    assert (args.norm, args.position, args.ffn, args.qk_norm, args.tie_embeddings, args.logit_softcap) == (
        "pre", "rope", "swiglu", False, False, None,
    )  # fmt: skip
    switches = {"norm", "position", "ffn", "qk_norm", "tie_embeddings", "logit_softcap"}
    assert not switches & set(args.keys())  # defaults are not unpacked: presets and saved configs read as before


def test_state_dict_keys_of_each_switch():
    base = _shapes(TransformerLM(**DEBUG, device="meta"))
    norms = {k for k in base if ".ln1." in k or ".ln2." in k or k.startswith("ln_final")}
    w3 = {k for k in base if ".ffn.w3." in k}
    qk = {f"layers.{i}.attn.{n}_norm.weight": (D_HEAD,) for i in range(DEBUG.num_layers) for n in "qk"}
    expected = {
        "post": base,
        "no-norm": {k: s for k, s in base.items() if k not in norms},
        "nope": base,
        "silu": {k: s for k, s in base.items() if k not in w3},
        "relu2": {k: s for k, s in base.items() if k not in w3},
        "qk-norm": base | qk,
        "tied": base,
        "softcap": base,
    }
    for name, shapes in expected.items():
        model = TransformerLM(**DEBUG, **SWITCHES[name], device="meta")
        assert _shapes(model) == shapes, name
    assert len(norms) == 2 * DEBUG.num_layers + 1 and len(w3) == DEBUG.num_layers


def test_nope_has_no_rope_and_the_no_norm_model_no_norm_modules():
    model = TransformerLM(**DEBUG, position="nope", norm="none", device="meta")
    assert all(layer.attn.rope is None and layer.ln1 is None and layer.ln2 is None for layer in model.layers)
    assert model.ln_final is None


# ---- each switch's equation against a naive version ----------------------------------------------------------------


def _rms(x, w):
    return TF.rms_norm(x, (x.shape[-1],), w, 1e-5)


def test_post_norm_block_is_norm_of_the_residual_sum():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 40, max_seq_len=8, theta=10000.0, norm="post")
    with torch.no_grad():
        block.ln1.weight.uniform_(0.5, 1.5)
        block.ln2.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 16)
    h = _rms(x + block.attn(x), block.ln1.weight)
    torch.testing.assert_close(block(x), _rms(h + block.ffn(h), block.ln2.weight))


def test_block_without_norm_is_plain_residuals():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 40, max_seq_len=8, theta=10000.0, norm="none")
    x = torch.randn(2, 5, 16)
    h = x + block.attn(x)
    torch.testing.assert_close(block(x), h + block.ffn(h))


def test_model_without_norm_has_no_final_norm():
    model = _model(norm="none")
    tokens = _tokens()
    x = model.token_embeddings(tokens)
    for layer in model.layers:
        x = layer(x)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), x @ model.lm_head.weight.T)


@pytest.mark.parametrize("kind, act", [("silu", lambda z: z * torch.sigmoid(z)), ("relu2", lambda z: TF.relu(z) ** 2)])
def test_non_gated_ffn_is_w2_act_w1(kind, act):
    torch.manual_seed(0)
    ffn = make_ffn(kind, 8, 32, dtype=torch.float64)
    assert isinstance(ffn, FeedForward) and not hasattr(ffn, "w3")
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    ref = act(x @ ffn.w1.weight.T) @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), ref)
    grads = torch.autograd.grad(ffn(x).sum(), (x, ffn.w1.weight))
    torch.testing.assert_close(grads, torch.autograd.grad(ref.sum(), (x, ffn.w1.weight)))
    with torch.inference_mode():  # the decoding path (a fused, transposed copy of the weight on a CPU)
        torch.testing.assert_close(ffn(x.detach()), ref.detach())
    assert isinstance(make_ffn("swiglu", 8, 32), SwiGLU)
    with pytest.raises(ValueError, match="swiglu, silu, relu2"):
        make_ffn("gelu", 8, 32)


def _naive_qk_norm_attention(attn: MultiHeadSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Per head: q_h = RoPE(RMSNorm(x W_Q,hᵀ)), k_h the same with W_K and k_norm; a causal softmax; W_O."""
    seq = x.shape[1]
    pos = torch.arange(seq)
    heads = []
    for h in range(attn.num_heads):
        rows = slice(h * attn.d_head, (h + 1) * attn.d_head)
        q = attn.rope(_rms(x @ attn.q_proj.weight[rows].T, attn.q_norm.weight), pos)
        k = attn.rope(_rms(x @ attn.k_proj.weight[rows].T, attn.k_norm.weight), pos)
        scores = q @ k.transpose(-1, -2) / attn.d_head**0.5
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        heads.append(torch.softmax(scores, -1) @ (x @ attn.v_proj.weight[rows].T))
    return torch.cat(heads, -1) @ attn.output_proj.weight.T


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_qk_norm_normalises_each_head_before_rope(attention):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, 12, 10000.0, attention=attention, qk_norm=True, dtype=torch.float64)
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    assert attn.q_norm.weight.shape == attn.k_norm.weight.shape == (4,)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    torch.testing.assert_close(attn(x), _naive_qk_norm_attention(attn, x))
    with torch.inference_mode():  # the fused projection of decoding normalises the same way
        torch.testing.assert_close(attn(x), _naive_qk_norm_attention(attn, x))


def test_nope_logits_ignore_the_order_of_earlier_tokens():
    # Without positions, one causal attention layer sees the tokens before the last as a set: shuffling them leaves
    # the last position's logits unchanged (up to rounding), where RoPE's do change. (Deeper, an earlier token's
    # own state depends on its prefix, so order matters again.)
    tokens = _tokens(1, 10)
    shuffled = torch.cat([tokens[:, :-1][:, torch.randperm(9, generator=torch.Generator().manual_seed(0))],
                          tokens[:, -1:]], dim=1)  # fmt: skip
    with torch.no_grad():
        nope, rope = _model(position="nope", num_layers=1), _model(num_layers=1)
        torch.testing.assert_close(nope(shuffled)[:, -1], nope(tokens)[:, -1], atol=1e-5, rtol=1e-5)
        assert (rope(shuffled)[:, -1] - rope(tokens)[:, -1]).abs().max() > 1e-3


def test_softcap_is_cap_tanh_of_the_logits_and_bounds_them():
    capped, plain = _model(logit_softcap=0.5), _model()
    tokens = _tokens()
    with torch.no_grad():
        logits = capped(tokens)
        torch.testing.assert_close(logits, 0.5 * torch.tanh(plain(tokens) / 0.5))
    assert logits.abs().max() < 0.5


# ---- tied embeddings ---------------------------------------------------------------------------------------------


def test_tied_head_is_the_embedding_parameter():
    model = _model(tie_embeddings=True)
    assert model.lm_head.weight is model.token_embeddings.weight
    names = [n for n, _ in model.named_parameters()]
    assert "token_embeddings.weight" in names and "lm_head.weight" not in names  # an optimizer sees it once
    assert {"token_embeddings.weight", "lm_head.weight"} <= model.state_dict().keys()  # both keys, one tensor
    # initialised as a head: N(0, 2/(d + V)) cut at ±3σ, not the embedding's N(0, 1)
    std = (2 / (D + V)) ** 0.5
    assert model.token_embeddings.weight.abs().max() <= 3 * std + 1e-6
    assert 0.8 * std < float(model.token_embeddings.weight.detach().std()) < 1.2 * std
    moved = model.to(torch.float64)
    assert moved.lm_head.weight is moved.token_embeddings.weight


def test_tie_survives_an_optimizer_step_and_a_checkpoint(tmp_path):
    from cs336_lm.optim import AdamW
    from cs336_lm.run import RunDir, load_run
    from cs336_lm.tokenizer import Tokenizer

    model = _model(tie_embeddings=True)
    optimizer = AdamW(model.parameters(), lr=1e-2)
    tokens = _tokens()
    F.cross_entropy(model(tokens)[:, :-1], tokens[:, 1:]).backward()
    optimizer.step()
    assert model.lm_head.weight is model.token_embeddings.weight
    run = RunDir(tmp_path / "run").create()
    Tokenizer({i: bytes([i]) for i in range(256)}, []).save(run.tokenizer_dir)  # the bytes: fewer ids than V
    run.save_checkpoint(model, optimizer, 1, None, config={"model": {**model.config(), "preset": None}})
    loaded = load_run(tmp_path / "run", "cpu").model
    assert loaded.args.tie_embeddings and loaded.lm_head.weight is loaded.token_embeddings.weight
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


# ---- every switch trains -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SWITCHES))
def test_a_training_step_reaches_every_parameter(name):
    model = _model(**SWITCHES[name])
    tokens = _tokens(2, DEBUG.context_length)
    logits = model(tokens)
    assert logits.shape == (2, DEBUG.context_length, V)
    loss = F.cross_entropy(logits[:, :-1], tokens[:, 1:])
    loss.backward()
    assert torch.isfinite(loss)
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


# ---- bad values --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("norm", "sideways", "norm must be one of pre, post, none; got 'sideways'"),
        ("position", "alibi", "position must be one of rope, nope"),
        ("ffn", "swiglue", "ffn must be one of swiglu, silu, relu2; got 'swiglue'; did you mean 'swiglu'?"),
        ("qk_norm", "yes", "qk_norm must be true or false"),
        ("tie_embeddings", 1, "tie_embeddings must be true or false"),
        ("logit_softcap", 0.0, "logit_softcap must be a finite number > 0"),
        ("logit_softcap", -30.0, "logit_softcap must be a finite number > 0"),
        ("logit_softcap", float("inf"), "logit_softcap must be a finite number > 0"),
        ("logit_softcap", True, "logit_softcap must be a finite number > 0"),
    ],
)
def test_bad_switch_values_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        TransformerLM(**DEBUG, **{field: value}, device="meta")
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        DEBUG.replace(**{field: value})


def test_odd_head_width_needs_rope_only():
    args = DEBUG.replace(d_model=60, num_heads=4, position="nope")  # d_head 15
    assert TransformerLM.from_args(args, device="meta").d_head == 15
    with pytest.raises(ValueError, match="must be even for RoPE"):
        args.replace(position="rope")


DEBUG_YAML = str(Path(__file__).resolve().parents[2] / "configs" / "debug.yaml")
REQUIRED = ["data.train_path=t.npy", "data.val_path=v.npy", "data.tokenizer_dir=tok", "train.out_dir=out"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.norm=sideways", "model.norm must be one of pre, post, none; got 'sideways'"),
        ("model.position=alibi", "model.position must be one of rope, nope"),
        ("model.ffn=gelu", "model.ffn must be one of swiglu, silu, relu2"),
        ("model.logit_softcap=-1", "model.logit_softcap must be a finite number > 0"),
        ("model.qk_norm=maybe", "model.qk_norm"),
    ],
)
def test_config_refuses_a_bad_switch_in_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(DEBUG_YAML, [*REQUIRED, override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_carries_the_switches_to_the_model():
    overrides = ["model.norm=post", "model.ffn=relu2", "model.qk_norm=true", "model.logit_softcap=30"]
    args = load_config(DEBUG_YAML, [*REQUIRED, *overrides]).model.args
    assert (args.norm, args.ffn, args.qk_norm, args.logit_softcap) == ("post", "relu2", True, 30.0)
    assert args.replace(norm="pre", ffn="swiglu", qk_norm=False, logit_softcap=None) == DEBUG.replace(num_kv_heads=4)
