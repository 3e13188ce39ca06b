"""nn.functional against torch's own ops: forward on odd shapes, large logits and masks, fp32 and bf16,
and backward both against torch's autograd and by finite differences (gradcheck in float64)."""

import math

import pytest
import torch
import torch.nn.functional as TF

from cs336_lm.nn import functional as F

TOL = {torch.float32: {"atol": 1e-6, "rtol": 1e-5}, torch.bfloat16: {"atol": 1e-2, "rtol": 1e-2}}
ODD_SHAPES = [(7,), (3, 5), (2, 3, 13), (5, 1, 123)]


def _randn(*shape, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).to(dtype)


def _grads(fn, *inputs, seed=1):
    """Gradients of <fn(inputs), random cotangent> with respect to every input."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    cot = _randn(*out.shape, dtype=out.dtype, seed=seed)
    (out * cot).sum().backward()
    return out.detach(), [x.grad for x in leaves]


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_softmax_matches_torch_every_dim(shape, dtype):
    x = _randn(*shape, dtype=dtype, scale=3.0)
    for dim in range(-len(shape), len(shape)):
        ours, (g_ours,) = _grads(lambda t, d=dim: F.softmax(t, d), x)
        ref, (g_ref,) = _grads(lambda t, d=dim: torch.softmax(t, d), x)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, ref, **TOL[dtype])
        torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])


@pytest.mark.parametrize("fn, ref", [(F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)])
def test_softmax_stable_for_huge_logits(fn, ref):
    x = torch.tensor([[1e4, 1e4 - 1.0, -1e4], [3e4, 3e4, 3e4]])
    out = fn(x, -1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref(x, -1))
    torch.testing.assert_close(F.softmax(x, -1)[0, :2], torch.tensor([1 / (1 + math.e**-1), 1 / (1 + math.e)]))


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_softmax_matches_torch(shape, dtype):
    x = _randn(*shape, dtype=dtype, scale=5.0)
    ours, (g_ours,) = _grads(lambda t: F.log_softmax(t, -1), x)
    ref, (g_ref,) = _grads(lambda t: torch.log_softmax(t, -1), x)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_matches_torch(dtype):
    x = _randn(4, 37, dtype=dtype, scale=4.0)
    ours, (g_ours,) = _grads(F.silu, x)
    ref, (g_ref,) = _grads(TF.silu, x)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_relu_squared_matches_torch(dtype):
    x = torch.cat([_randn(4, 37, scale=4.0), torch.zeros(4, 1)], dim=1).to(dtype)  # zeros: gradient 0 there
    ours, (g_ours,) = _grads(F.relu_squared, x)
    ref, (g_ref,) = _grads(lambda a: TF.relu(a) ** 2, x)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])
    with torch.no_grad():
        torch.testing.assert_close(F.relu_squared(x), ours.detach(), rtol=0, atol=0)
    assert torch.autograd.gradcheck(F.relu_squared, _randn(3, 5, dtype=torch.float64).requires_grad_())


def test_softcap_is_cap_tanh_and_near_identity_for_small_logits():
    x = torch.linspace(-1000, 1000, 101)
    torch.testing.assert_close(F.softcap(x, 15.0), 15.0 * torch.tanh(x / 15.0))
    assert F.softcap(x, 15.0).abs().max() <= 15.0
    small = torch.linspace(-0.01, 0.01, 11)
    torch.testing.assert_close(F.softcap(small, 30.0), small, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 64), (1, 129)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_torch(shape, dtype):
    x = _randn(*shape, dtype=dtype, scale=3.0)
    w = _randn(shape[-1], dtype=dtype, seed=2)
    ours, g_ours = _grads(lambda a, b: F.rms_norm(a, b, 1e-5), x, w)
    ref, g_ref = _grads(lambda a, b: TF.rms_norm(a.float(), (a.shape[-1],), b.float(), 1e-5).to(a.dtype), x, w)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=TOL[dtype]["atol"] * 10, rtol=TOL[dtype]["rtol"])


def test_rms_norm_computes_in_float32():
    """A bf16 input whose mean square overflows nothing in fp32 but would lose precision in bf16."""
    x = torch.full((1, 256), 3.0, dtype=torch.bfloat16)
    x[0, 0] = 300.0
    out = F.rms_norm(x, torch.ones(256, dtype=torch.bfloat16))
    expected = x.float() / torch.sqrt((x.float() ** 2).mean() + 1e-5)
    torch.testing.assert_close(out.float(), expected, atol=0, rtol=8e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("use_mask", ["none", "causal", "random"])
def test_sdpa_matches_torch(dtype, use_mask):
    q = _randn(2, 3, 5, 8, dtype=dtype, seed=1)
    k = _randn(2, 3, 7, 8, dtype=dtype, seed=2)
    v = _randn(2, 3, 7, 6, dtype=dtype, seed=3)
    mask = None
    if use_mask == "causal":
        mask = torch.ones(5, 7, dtype=torch.bool).tril(2)
    elif use_mask == "random":
        mask = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(4)) > 0.4
        mask[..., 0] = True  # every query keeps one key
    ours, g_ours = _grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, mask), q, k, v)
    ref, g_ref = _grads(lambda a, b, c: TF.scaled_dot_product_attention(a, b, c, attn_mask=mask), q, k, v)
    tol = {"atol": 2e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(ours, ref, **tol)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_sdpa_three_leading_dims():
    q, k, v = (_randn(2, 2, 3, 4, 8, seed=s) for s in range(3))
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v), TF.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("q_len, k_len, q_offset", [(5, 5, 0), (3, 7, 4), (1, 6, 5), (4, 4, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_softmax_matches_masked_torch_softmax(q_len, k_len, q_offset, dtype):
    scores = _randn(2, 3, q_len, k_len, dtype=dtype, scale=4.0)
    mask = torch.ones(q_len, k_len, dtype=torch.bool).tril(q_offset)
    ours, (g_ours,) = _grads(lambda s: F.causal_softmax(s, 0.35, q_offset), scores)
    ref, (g_ref,) = _grads(lambda s: torch.softmax((s * 0.35).masked_fill(~mask, -math.inf), -1), scores)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])
    assert (ours[..., ~mask] == 0).all()


def test_causal_mask_example():
    assert F.causal_mask(2, 3, 1).tolist() == [[True, True, False], [True, True, True]]


@pytest.mark.parametrize("shape", [(6, 11), (2, 3, 17), (1, 1, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_matches_torch(shape, dtype):
    logits = _randn(*shape, dtype=dtype, scale=3.0)
    targets = torch.randint(0, shape[-1], shape[:-1], generator=torch.Generator().manual_seed(5))
    ours, (g_ours,) = _grads(lambda x: F.cross_entropy(x, targets), logits)
    ref, (g_ref,) = _grads(lambda x: TF.cross_entropy(x.reshape(-1, shape[-1]).float(), targets.reshape(-1)), logits)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(g_ours, g_ref.to(dtype), **TOL[dtype])


def test_cross_entropy_huge_logits_and_hand_value():
    logits = torch.tensor([[1e4, 1e4 - 1, -1e4], [0.0, 0.0, 0.0]])
    targets = torch.tensor([1, 2])
    expected = (math.log(1 + math.e) + math.log(3)) / 2  # row 0: lse − x₁ = 1 + log(1 + e⁻¹)
    torch.testing.assert_close(F.cross_entropy(logits, targets), torch.tensor(expected))
    torch.testing.assert_close(F.cross_entropy(logits, targets), TF.cross_entropy(logits, targets))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    targets = torch.tensor([[1, 0, 3], [2, 2, 0]])
    mask = torch.tensor([[True, False, True, True], [True, True, False, False], [False, True, True, True]])
    checks = [
        (lambda x: F.softmax(x, 0), (leaf(3, 4),)),
        (lambda x: F.softmax(x, -1), (leaf(2, 3, 4),)),
        (lambda x: F.log_softmax(x, 1), (leaf(3, 4, 2),)),
        (F.silu, (leaf(3, 5),)),
        (lambda x, w: F.rms_norm(x, w, 1e-5), (leaf(2, 3, 6), leaf(6))),
        (lambda x: F.causal_softmax(x, 0.7, 1), (leaf(2, 3, 4),)),
        (lambda x: F.cross_entropy(x, targets), (leaf(2, 3, 5),)),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask), (leaf(2, 3, 4), leaf(2, 4, 4), leaf(2, 4, 3))),
        (lambda x: F.rope(x, torch.tensor([3, 0, 7]), *_tables(4, 8)), (leaf(2, 3, 4),)),
    ]
    for fn, inputs in checks:
        assert torch.autograd.gradcheck(fn, inputs), fn


def _tables(d: int, max_len: int, theta: float = 10000.0):
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * theta ** (-torch.arange(0, d, 2) / d)
    return angles.cos(), angles.sin()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("chunk", [5, 24, 1 << 18])
def test_cross_entropy_in_row_chunks_matches_torch(monkeypatch, dtype, chunk):
    """Chunks of one row, of 4 rows with a ragged last one, and all rows in one: the same loss and gradient."""
    monkeypatch.setattr(F, "_CROSS_ENTROPY_CHUNK", chunk)
    logits = _randn(7, 5, dtype=dtype, scale=3.0)
    targets = torch.tensor([0, 4, 2, 2, 1, 3, 0])
    ours, (g_ours,) = _grads(lambda x: F.cross_entropy(x, targets), logits)
    ref, (g_ref,) = _grads(lambda x: TF.cross_entropy(x.to(torch.float64), targets), logits)
    tol = {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else TOL[dtype]
    torch.testing.assert_close(ours.double(), ref, **tol)
    torch.testing.assert_close(g_ours.double(), g_ref.to(dtype).double(), **tol)
    assert ours.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert len(F._row_chunks(7, 5, torch.device("cpu"))) == -(-7 // max(1, chunk // 5))


def test_cross_entropy_chunks_are_bounded_for_a_huge_vocabulary_and_whole_on_a_gpu():
    assert len(F._row_chunks(4096, 1 << 18, torch.device("cpu"))) == F._CROSS_ENTROPY_MAX_CHUNKS
    assert list(F._row_chunks(32768, 10_000, torch.device("cuda"))) == [0]
