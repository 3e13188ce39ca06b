"""scripts/bench_paged_decode.py at a toy size: the paged decode attention of a lone sequence meets the plain
softmax attention over the same keys for every block size (lengths that fill the last block and that do not), and
the JSON holds a timing for each."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from cs336_lm.nn.paged import DecodePlan, _decode_run

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
    assert all(set(r["paged_us"]) == {"8", "16"} and r["contiguous_us"] > 0 for r in results)
    assert "paged bs=8" in capsys.readouterr().out


@pytest.mark.parametrize("length,size", [(1, 4), (7, 4), (8, 4), (33, 16)])
def test_decode_run_meets_naive_attention(length, size):
    """The oracle: softmax(q·Kᵀ/√d)·V written out over the tokens one by one."""
    torch.manual_seed(length)
    heads, d = 3, 5
    q, k, v = torch.randn(heads, 1, d), torch.randn(heads, length, d), torch.randn(heads, length, d)
    width = math.ceil(length / size)
    pools = [torch.full((width + 2, heads, size, d), float("nan")) for _ in range(2)]
    for pool, tensor in zip(pools, (k, v), strict=True):
        pool[1 : 1 + width] = 0  # the unwritten end of the last block is zeroed, as the engine's pool is
        for t in range(length):
            pool[1 + t // size, :, t % size] = tensor[:, t]
    plan = DecodePlan(width=width, run=slice(1, 1 + width), length=length)
    out = _decode_run(q, pools[0][plan.run], pools[1][plan.run], plan, 1 / math.sqrt(d))
    expected = torch.empty(heads, d)
    for h in range(heads):
        scores = torch.tensor([float(q[h, 0] @ k[h, t]) / math.sqrt(d) for t in range(length)])
        expected[h] = torch.softmax(scores, 0) @ v[h]
    torch.testing.assert_close(out.view(heads, d), expected, rtol=1e-5, atol=1e-6)
