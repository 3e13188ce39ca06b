"""The CPU reference attention in batch slices equals the whole-batch computation, forward and backward."""

import torch

from cs336_lm.nn import attention
from cs336_lm.nn.attention import MultiHeadSelfAttention


def _run(mha, x):
    x = x.clone().requires_grad_(True)
    y = mha(x)
    y.square().sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in mha.parameters()]


def test_sliced_reference_attention_equals_whole_batch(monkeypatch):
    torch.manual_seed(0)
    mha = MultiHeadSelfAttention(d_model=16, num_heads=4, max_seq_len=12, theta=10000.0)
    x = torch.randn(5, 12, 16)
    whole = _run(mha, x)
    mha.zero_grad()
    score_bytes_per_row = 4 * 12 * 12 * 4  # (heads, q, k) fp32
    monkeypatch.setattr(attention, "CPU_SCORES_BYTES_PER_SLICE", 2 * score_bytes_per_row)
    q = torch.zeros(5, 4, 12, 4)
    assert attention._rows_per_slice(q, q) == 2  # slices of 2, 2, 1 rows
    sliced = _run(mha, x)
    torch.testing.assert_close(sliced[0], whole[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sliced[1], whole[1], rtol=1e-6, atol=1e-6)
    for got, want in zip(sliced[2], whole[2], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_rows_per_slice_keeps_small_work_whole():
    q = torch.zeros(8, 16, 1, 32)  # one decoding step: tiny scores
    assert attention._rows_per_slice(q, torch.zeros(8, 16, 256, 32)) >= 8
    big = torch.zeros(8, 16, 256, 32)  # 4 MiB of scores per row → 2 rows per 8 MiB slice
    assert attention._rows_per_slice(big, big) == 2


def test_query_tiles_equal_one_block_forward_and_backward(monkeypatch):
    # 150 queries in tiles of 64, 64 and 22, over keys that continue a 5-token cache, and grouped heads
    torch.manual_seed(1)
    mha = MultiHeadSelfAttention(d_model=32, num_heads=4, max_seq_len=160, theta=10000.0, num_kv_heads=2)
    q = torch.randn(3, 4, 150, 8, requires_grad=True)
    k, v = (torch.randn(3, 2, 155, 8, requires_grad=True) for _ in range(2))
    results = []
    for tile in (64, 10_000):  # tiled, then one block
        monkeypatch.setattr(attention, "CPU_CAUSAL_TILE", tile)
        out = mha.attend(q, k, v, q_offset=5)
        grads = torch.autograd.grad(out, (q, k, v), torch.randn(out.shape, generator=torch.Generator().manual_seed(2)))
        results.append((out.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    for got, want in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_tiled_attention_gradcheck_float64(monkeypatch):
    # tiles of 3 over 7 queries (3, 3, 1) after a 2-token cache, 2 query heads per key/value head
    monkeypatch.setattr(attention, "CPU_CAUSAL_TILE", 3)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    k, v = (torch.randn(2, 2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda q, k, v: attention._TiledCausalAttention.apply(q, k, v, 0.6, 2), (q, k, v))
    # and the values equal an independent masked softmax with the keys repeated per query head
    out = attention._TiledCausalAttention.apply(q, k, v, 0.6, 2)
    kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    mask = torch.ones(7, 9, dtype=torch.bool).tril(2)
    want = torch.softmax((q @ kr.transpose(-2, -1) * 0.6).masked_fill(~mask, float("-inf")), -1) @ vr
    torch.testing.assert_close(out, want)


def test_tiles_under_autocast_equal_one_block(monkeypatch):
    # bf16 autocast takes the autograd route through the same tiles; it must equal the untiled bf16 computation
    torch.manual_seed(4)
    mha = MultiHeadSelfAttention(d_model=32, num_heads=4, max_seq_len=160, theta=10000.0, num_kv_heads=2)
    x = torch.randn(2, 150, 32)
    results = []
    for tile in (64, 10_000):
        monkeypatch.setattr(attention, "CPU_CAUSAL_TILE", tile)
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = mha(leaf)
        y.float().square().sum().backward()
        results.append((y.float().detach(), leaf.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0.02, atol=0.02)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0.05, atol=0.05)
