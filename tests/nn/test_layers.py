"""Leaf modules against naive references: Linear/Embedding/RMSNorm/SwiGLU vs torch's ops, RoPE vs an
independent complex-number formulation and its relative-position property, and the DESIGN init."""

import math

import pytest
import torch
import torch.nn.functional as TF

from cs336_lm.nn import Embedding, Linear, RMSNorm, RotaryPositionalEmbedding, SwiGLU
from cs336_lm.nn import functional as F


def test_linear_is_x_times_weight_transposed():
    torch.manual_seed(0)
    layer = Linear(7, 5)
    assert layer.weight.shape == (5, 7)
    x = torch.randn(2, 3, 7)
    torch.testing.assert_close(layer(x), TF.linear(x, layer.weight))
    assert list(layer.state_dict()) == ["weight"]


def test_embedding_looks_up_rows():
    emb = Embedding(11, 4)
    ids = torch.tensor([[0, 10, 3], [3, 3, 1]])
    torch.testing.assert_close(emb(ids), TF.embedding(ids, emb.weight))


def test_rms_norm_module_matches_torch():
    torch.manual_seed(0)
    norm = RMSNorm(12, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 4, 12)
    torch.testing.assert_close(norm(x), TF.rms_norm(x, (12,), norm.weight, 1e-6))
    torch.testing.assert_close(RMSNorm(12).weight, torch.ones(12))


def test_swiglu_matches_naive():
    torch.manual_seed(0)
    ffn = SwiGLU(8, 24)
    x = torch.randn(2, 5, 8)
    w1, w2, w3 = ffn.w1.weight, ffn.w2.weight, ffn.w3.weight
    expected = (TF.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(ffn(x), expected)
    assert (w1.shape, w2.shape, w3.shape) == ((24, 8), (8, 24), (24, 8))


def _rope_complex(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE as complex multiplication: pair (x[2k], x[2k+1]) is x[2k] + i·x[2k+1], times e^{i·p·θ^(−2k/d)}."""
    d = x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double()[..., None] * freqs
    rot = torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(z * rot).reshape(x.shape).to(x.dtype)


@pytest.mark.parametrize(
    "shape, positions", [((2, 5, 8), torch.arange(5)), ((3, 2, 4, 16), torch.tensor([7, 0, 3, 30]))]
)
def test_rope_matches_complex_formulation(shape, positions):
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(theta=10000.0, d_k=shape[-1], max_seq_len=32)
    x = torch.randn(shape)
    torch.testing.assert_close(rope(x, positions), _rope_complex(x, positions, 10000.0), atol=1e-5, rtol=1e-5)


def test_rope_batched_positions_and_persistence():
    rope = RotaryPositionalEmbedding(theta=500.0, d_k=6, max_seq_len=16)
    x = torch.randn(2, 3, 6)
    pos = torch.tensor([[0, 1, 2], [5, 9, 15]])
    torch.testing.assert_close(rope(x, pos), _rope_complex(x, pos, 500.0), atol=1e-5, rtol=1e-5)
    assert rope.state_dict() == {}  # the cos/sin cache is a non-persistent buffer
    assert rope.cos.shape == (16, 3)


def test_rope_dot_product_depends_only_on_position_difference():
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(theta=10000.0, d_k=32, max_seq_len=64)
    q, k = torch.randn(32), torch.randn(32)

    def score(m, n):
        return rope(q[None], torch.tensor([m])) @ rope(k[None], torch.tensor([n])).T

    for m, n, shift in [(3, 1, 10), (0, 7, 40), (20, 20, 5)]:
        torch.testing.assert_close(score(m, n), score(m + shift, n + shift), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(3, 1), score(3, 2))
    torch.testing.assert_close(rope(q[None], torch.tensor([0])), q[None])  # position 0 is the identity


def test_rope_rejects_odd_dim():
    with pytest.raises(ValueError, match="even"):
        RotaryPositionalEmbedding(10000.0, 5, 8)


def test_init_statistics():
    torch.manual_seed(0)
    d_in, d_out = 300, 500
    w = Linear(d_in, d_out).weight.detach()
    sigma = math.sqrt(2 / (d_in + d_out))
    assert w.abs().max() <= 3 * sigma
    # a normal truncated at ±3σ has std 0.9866σ
    assert abs(w.std().item() / sigma - 0.9866) < 0.01
    assert abs(w.mean().item()) < 0.01 * sigma
    e = Embedding(1000, 200).weight.detach()
    assert e.abs().max() <= 3.0
    assert abs(e.std().item() - 0.9866) < 0.01


def test_device_and_dtype_keywords():
    for module in (
        Linear(4, 3, dtype=torch.float64),
        Embedding(5, 4, dtype=torch.float64),
        SwiGLU(4, 8, dtype=torch.float64),
    ):
        assert all(p.dtype == torch.float64 for p in module.parameters())
    assert RMSNorm(4, device="meta").weight.device.type == "meta"


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "odd_offset"])
def test_rope_complex_and_real_forms_agree_with_gradients(layout):
    """float32 on a CPU rotates as complex numbers, other dtypes and devices through cos'/swap/sin': both forms give
    the float64 reference's values, and the gradient of a rotation is the rotation back, on any strides."""
    torch.manual_seed(1)
    rope = RotaryPositionalEmbedding(theta=10000.0, d_k=8, max_seq_len=32)
    positions = torch.tensor([5, 0, 31, 2, 9])
    base = torch.randn(2, 5, 3 * 8 + 1)
    if layout == "contiguous":
        x = base[..., :24].contiguous().view(2, 5, 3, 8).transpose(1, 2).contiguous()
    elif layout == "transposed":
        x = base[..., :24].view(2, 5, 3, 8).transpose(1, 2)  # (2, 3, 5, 8) view, like split_heads
    else:
        x = base[..., 1:25].unflatten(-1, (3, 8)).transpose(1, 2)  # storage offset 1: no complex view possible
    assert F.rope_is_complex(x)
    expected = _rope_complex(x.double(), positions, 10000.0)
    cos2, sin2 = rope.cos2[positions], rope.sin2[positions]
    forms = {
        "complex": lambda t: F.rope_complex(t, torch.complex(rope.cos[positions], rope.sin[positions])),
        "real": lambda t: F.rope_rotate(t, cos2, sin2),
        "layer": lambda t: rope(t, positions),
    }
    weights = torch.randn(expected.shape)
    for name, form in forms.items():
        leaf = x.detach().clone().requires_grad_()
        y = form(leaf)
        torch.testing.assert_close(y.double(), expected, atol=1e-6, rtol=1e-6, msg=name)
        (y * weights).sum().backward()
        # the gradient turns the weights back by the same angle: rotate(grad) equals the weights
        turned = _rope_complex(leaf.grad.double(), positions, 10000.0)
        torch.testing.assert_close(turned, weights.double(), atol=1e-5, rtol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(forms["complex"](x), forms["real"](x), atol=1e-6, rtol=1e-6)
    assert not F.rope_is_complex(x.bfloat16())
