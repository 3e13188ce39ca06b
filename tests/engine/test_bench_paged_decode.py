"""scripts/bench_paged_decode.py at a toy size: a lone sequence's decode attention through the paged cache — over its
contiguous mirror and over the blocks in place — meets the plain softmax attention written out token by token, for
lengths that fill the last block and that do not; and the JSON holds a timing for each way and block size."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_paged_decode.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_paged_decode", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_checks_and_times_every_block_size(tmp_path, one_torch_thread, capsys):
    out = tmp_path / "paged.json"
    args = ["--lengths", "16,37", "--block-sizes", "8,16", "--heads", "4", "--d-head", "8"]
    assert load().main([*args, "--iters", "10", "--repeats", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["tokens"] for r in results] == [16, 37]
    assert all(set(r["mirrored_us"]) == set(r["in_place_us"]) == {"8", "16"} for r in results)
    assert all(r["contiguous_us"] > 0 for r in results)
    assert "mirrored bs=8" in capsys.readouterr().out


@pytest.mark.parametrize("mirrored", [True, False])
@pytest.mark.parametrize("length,size", [(1, 4), (7, 4), (8, 4), (33, 16)])
def test_a_lone_decode_meets_naive_attention(length, size, mirrored):
    """The oracle: softmax(q·Kᵀ/√d)·V written out over the tokens one by one."""
    from cs336_lm.nn.attention import MultiHeadSelfAttention

    bench = load()
    torch.manual_seed(length)
    heads, d = 3, 5
    attention = MultiHeadSelfAttention(heads * d, heads)
    q, k, v = torch.randn(1, heads, 1, d), torch.randn(heads, length, d), torch.randn(heads, length, d)
    with torch.inference_mode():
        layer = bench.paged_layer(k, v, size, attention, mirrored=mirrored)
        out = layer.attend(q, k[None, :, -1:], v[None, :, -1:], attention)
    assert (layer.batch.mirrored is not None) == mirrored
    expected = torch.empty(heads, d)
    for h in range(heads):
        scores = torch.tensor([float(q[0, h, 0] @ k[h, t]) / math.sqrt(d) for t in range(length)])
        expected[h] = torch.softmax(scores, 0) @ v[h]
    torch.testing.assert_close(out.view(heads, d), expected, rtol=1e-5, atol=1e-6)
