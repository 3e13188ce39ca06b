"""Attention, block and whole-model tests: parity with HuggingFace's LlamaForCausalLM, causality, the
DESIGN state_dict names, the two attention backends, offsets for KV-cache decoding, length checks."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as TF

from cs336_lm.nn import PRESETS, MultiHeadSelfAttention, TransformerBlock, TransformerLM

DEBUG = PRESETS["debug"]


def _model(attention="reference", seed=0, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    model = TransformerLM(**{**DEBUG, **overrides}, attention=attention)
    with torch.no_grad():  # non-trivial norm gains, so a swapped or missing norm weight shows up
        for name, p in model.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_final.weight":
                p.uniform_(0.5, 1.5)
    return model


def _tokens(batch, seq, seed=1, vocab=DEBUG["vocab_size"]):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_state_dict_names_and_shapes_are_design():
    cfg = {**DEBUG, "num_layers": 2}
    d, f, v = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    expected = {"token_embeddings.weight": (v, d), "ln_final.weight": (d,), "lm_head.weight": (v, d)}
    for i in range(2):
        expected |= {
            f"layers.{i}.ln1.weight": (d,),
            f"layers.{i}.attn.q_proj.weight": (d, d),
            f"layers.{i}.attn.k_proj.weight": (d, d),
            f"layers.{i}.attn.v_proj.weight": (d, d),
            f"layers.{i}.attn.output_proj.weight": (d, d),
            f"layers.{i}.ln2.weight": (d,),
            f"layers.{i}.ffn.w1.weight": (f, d),
            f"layers.{i}.ffn.w2.weight": (d, f),
            f"layers.{i}.ffn.w3.weight": (f, d),
        }
    model = TransformerLM(**cfg)
    assert {k: tuple(t.shape) for k, t in model.state_dict().items()} == expected
    state = {k: torch.randn(shape) for k, shape in expected.items()}
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.layers[1].ffn.w2.weight, state["layers.1.ffn.w2.weight"])


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("hf_attention", ["eager", "sdpa"])
def test_parity_with_hf_llama(attention, hf_attention):
    pytest.importorskip("transformers")
    from cs336_lm.interop.hf_llama import to_llama

    model = _model(attention, rope_theta=500.0)
    hf = to_llama(model, attn_implementation=hf_attention)
    tokens = _tokens(3, DEBUG["context_length"])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=0)
        positions = torch.arange(5, 5 + 17).expand(3, 17)  # offset positions, as a KV-cache decoder passes
        torch.testing.assert_close(
            model(tokens[:, :17], positions), hf(tokens[:, :17], position_ids=positions).logits, atol=1e-4, rtol=0
        )


def test_attention_backends_agree_forward_and_backward():
    ref, fast = _model("reference"), _model("sdpa")
    fast.load_state_dict(ref.state_dict(), strict=True)
    tokens = _tokens(2, 33)
    targets = _tokens(2, 33, seed=2)
    grads = []
    for model in (ref, fast):
        logits = model(tokens)
        TF.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        grads.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    for name, g in grads[0][1].items():
        torch.testing.assert_close(g, grads[1][1][name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_causality(attention):
    model = _model(attention)
    tokens = _tokens(1, 40)
    changed = tokens.clone()
    t = 23
    changed[0, t] = (changed[0, t] + 1) % DEBUG["vocab_size"]
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t], atol=0, rtol=0)
    assert not torch.allclose(a[:, t:], b[:, t:])


def test_shorter_inputs_and_explicit_positions():
    model = _model()
    tokens = _tokens(2, 9)
    with torch.no_grad():
        default = model(tokens)
        assert default.shape == (2, 9, DEBUG["vocab_size"])
        torch.testing.assert_close(model(tokens, torch.arange(9)), default)
        torch.testing.assert_close(model(tokens, torch.arange(9).expand(2, 9)), default)
        assert not torch.allclose(model(tokens, torch.arange(9) + 3), default)
        # a prefix sees exactly what the full sequence sees at the same positions
        torch.testing.assert_close(model(tokens[:, :4]), default[:, :4], atol=1e-6, rtol=1e-5)


def test_too_long_input_names_both_lengths():
    model = _model()
    with pytest.raises(ValueError, match=r"65 tokens.*context_length 64"):
        model(_tokens(1, 65))


def _naive_attention(x, attn: MultiHeadSelfAttention):
    """Per-head loops with explicit rotation matrices: an independent MHA reference."""
    seq = x.shape[1]
    dh = attn.d_head
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    heads = []
    for h in range(attn.num_heads):
        cols = slice(h * dh, (h + 1) * dh)
        qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]
        if attn.rope is not None:
            rot = torch.zeros(seq, dh, dh)
            for p in range(seq):
                for i in range(dh // 2):
                    angle = p * attn.rope.theta ** (-2 * i / dh)
                    c, s = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
                    rot[p, 2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]])
            qh = torch.einsum("pij,bpj->bpi", rot, qh)
            kh = torch.einsum("pij,bpj->bpi", rot, kh)
        scores = qh @ kh.transpose(1, 2) / dh**0.5
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        heads.append(torch.softmax(scores, -1) @ vh)
    return attn.output_proj(torch.cat(heads, -1))


@pytest.mark.parametrize("theta", [None, 10000.0])
def test_attention_matches_naive_per_head_loop(theta):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, max_seq_len=12, theta=theta)
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(attn(x), _naive_attention(x, attn), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("new", [1, 3])
def test_attend_with_offset_matches_full_attention(attention, new):
    """What a KV-cache decoder does: the last `new` queries against all keys, q_offset = past length."""
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, max_seq_len=12, theta=10000.0, attention=attention)
    x = torch.randn(2, 9, 16)
    pos = torch.arange(9)
    q = attn.rope(attn.split_heads(attn.q_proj(x)), pos)  # (batch, heads, seq, d_head)
    k = attn.rope(attn.split_heads(attn.k_proj(x)), pos)
    v = attn.split_heads(attn.v_proj(x))
    full = attn.output_proj(attn.merge_heads(attn.attend(q, k, v)))
    torch.testing.assert_close(full, attn(x))
    tail = attn.attend(q[:, :, -new:], k, v, q_offset=9 - new)
    torch.testing.assert_close(attn.output_proj(attn.merge_heads(tail)), full[:, -new:], atol=1e-6, rtol=1e-5)


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 40, max_seq_len=8, theta=10000.0)
    with torch.no_grad():
        block.ln2.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 16)
    h = x + block.attn(TF.rms_norm(x, (16,), block.ln1.weight, 1e-5))
    expected = h + block.ffn(TF.rms_norm(h, (16,), block.ln2.weight, 1e-5))
    torch.testing.assert_close(block(x), expected)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="attention"):
        TransformerLM(**DEBUG, attention="flash")
    with pytest.raises(ValueError, match="kernels"):
        TransformerLM(**DEBUG, kernels="cuda")
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(10, 3)


def test_bf16_autocast_and_bf16_weights_run():
    model = _model()
    tokens = _tokens(2, 16)
    with torch.no_grad():
        ref = model(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(tokens)
        model16 = _model(dtype=torch.bfloat16)
        pure = model16(tokens)
    assert mixed.dtype == torch.bfloat16 and pure.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), ref, atol=0.1, rtol=0.05)
    assert torch.isfinite(pure).all()


def test_kernels_then_nn_imports_from_a_fresh_interpreter():
    """cs336_lm.kernels uses nn.functional and nn's modules use kernels; the nn-first order is this file's."""
    code = "import cs336_lm.kernels, cs336_lm.nn; from cs336_lm.nn import TransformerLM, functional; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_kernels_and_backends_agree(dtype):
    cpu = _model()
    tokens = _tokens(2, 48)
    expected = cpu(tokens).detach()
    for attention in ("reference", "sdpa"):
        model = TransformerLM(**DEBUG, attention=attention, device="cuda")
        model.load_state_dict(cpu.state_dict(), strict=True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            logits = model(tokens.cuda())
        tol = 1e-4 if dtype == torch.float32 else 0.1
        torch.testing.assert_close(logits.float().cpu(), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("num_kv_heads", [1, 2])
def test_grouped_query_attention_matches_hf_llama(attention, num_kv_heads):
    pytest.importorskip("transformers")
    from cs336_lm.interop.hf_llama import to_llama

    model = _model(attention, num_kv_heads=num_kv_heads, rope_theta=500.0)
    d_head = DEBUG["d_model"] // DEBUG["num_heads"]
    assert model.layers[0].attn.k_proj.weight.shape == (num_kv_heads * d_head, DEBUG["d_model"])
    hf = to_llama(model, attn_implementation="eager")
    assert hf.config.num_key_value_heads == num_kv_heads
    tokens = _tokens(2, DEBUG["context_length"])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=0)


def test_grouped_query_attention_is_repeated_key_value_heads():
    # GQA equals plain attention whose key/value heads are the grouped ones repeated, head by head.
    torch.manual_seed(3)
    gqa = MultiHeadSelfAttention(32, 8, 16, 10000.0, num_kv_heads=2)
    full = MultiHeadSelfAttention(32, 8, 16, 10000.0)
    d_head = 4
    with torch.no_grad():
        full.q_proj.weight.copy_(gqa.q_proj.weight)
        full.output_proj.weight.copy_(gqa.output_proj.weight)
        for name in ("k_proj", "v_proj"):
            heads = getattr(gqa, name).weight.view(2, d_head, 32)
            getattr(full, name).weight.copy_(heads.repeat_interleave(4, dim=0).reshape(32, 32))
    x = torch.randn(3, 16, 32)
    torch.testing.assert_close(gqa(x), full(x), atol=1e-6, rtol=1e-5)


def test_num_kv_heads_must_divide_num_heads():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        MultiHeadSelfAttention(32, 8, 16, 10000.0, num_kv_heads=3)
