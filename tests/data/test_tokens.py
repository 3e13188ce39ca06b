"""Token files and batching: dtype choice, file errors, get_batch windows and sampling, fixed eval windows."""

import resource

import numpy as np
import pytest
import torch

from cs336_lm.data import (
    check_token_ids,
    eval_window_starts,
    get_batch,
    iter_eval_batches,
    load_tokens,
    token_dtype,
    write_tokens,
)
from cs336_lm.errors import DataError


@pytest.mark.parametrize(
    ("vocab", "dtype"), [(1, np.uint16), (10_000, np.uint16), (65_536, np.uint16), (65_537, np.uint32)]
)
def test_token_dtype(vocab, dtype):
    assert token_dtype(vocab) == dtype
    assert np.iinfo(token_dtype(vocab)).max >= vocab - 1


def test_write_then_load_round_trip(tmp_path):
    ids = np.array([0, 5, 65_535, 7])
    path = write_tokens(tmp_path / "a.npy", ids, vocab_size=65_536)
    tokens = load_tokens(path)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    assert tokens.tolist() == ids.tolist()
    big = load_tokens(write_tokens(tmp_path / "b.npy", [70_000, 1], vocab_size=100_000))
    assert big.dtype == np.uint32 and big.tolist() == [70_000, 1]
    assert len(load_tokens(write_tokens(tmp_path / "e.npy", [], vocab_size=10))) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


@pytest.mark.parametrize("ids", [[0, 10], [-1, 3]])
def test_write_rejects_out_of_range(tmp_path, ids):
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        write_tokens(tmp_path / "a.npy", ids, vocab_size=10)
    assert not (tmp_path / "a.npy").exists()


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokens(tmp_path / "missing.npy")
    full = write_tokens(tmp_path / "full.npy", np.arange(1000), vocab_size=1000).read_bytes()
    cases = {
        "truncated.npy": full[:-10],
        "header_only.npy": full[:40],
        "empty.npy": b"",
        "text.npy": b"once upon a time\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=name):
            load_tokens(tmp_path / name)
    np.save(tmp_path / "two_d.npy", np.zeros((2, 3), dtype=np.uint16))
    np.save(tmp_path / "floats.npy", np.zeros(3))
    np.savez(tmp_path / "archive.npz", a=np.zeros(3, dtype=np.uint16))
    for name in ["two_d.npy", "floats.npy", "archive.npz"]:
        with pytest.raises(DataError, match=name):
            load_tokens(tmp_path / name)


def test_check_token_ids(tmp_path):
    tokens = load_tokens(write_tokens(tmp_path / "a.npy", [1, 2, 9, 3, 12, 4], vocab_size=100))
    check_token_ids(tokens, 100)
    with pytest.raises(DataError, match=r"token id 12 at position 4 .*vocab_size 10"):
        check_token_ids(tokens, 10, chunk=4)  # the bad id is in the second chunk


def test_get_batch_windows_are_shifted_slices():
    data = np.arange(100, 164, dtype=np.uint16)  # value = 100 + position, so x reveals its start
    x, y = get_batch(data, batch_size=16, context_length=8, device="cpu", generator=np.random.default_rng(0))
    assert x.shape == y.shape == (16, 8) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    for row_x, row_y in zip(x, y, strict=True):
        start = int(row_x[0]) - 100
        assert row_x.tolist() == list(range(100 + start, 108 + start))
        assert row_y.tolist() == list(range(101 + start, 109 + start))


def test_starts_cover_exactly_the_valid_range_uniformly():
    # 20 tokens, T = 4 → starts 0..15 (16 values); the last target is data[19]
    data = np.arange(20, dtype=np.uint32)
    x, y = get_batch(data, 16_000, 4, "cpu", generator=np.random.default_rng(1))
    starts = x[:, 0].numpy()
    counts = np.bincount(starts, minlength=20)
    assert counts[16:].sum() == 0 and (counts[:16] > 0).all()
    assert int(y.max()) == 19
    expected = 16_000 / 16
    chi2 = ((counts[:16] - expected) ** 2 / expected).sum()
    assert chi2 < 37.7  # 15 degrees of freedom, p = 0.001


def test_shortest_dataset_has_one_window():
    x, y = get_batch(np.array([3, 1, 4], dtype=np.uint16), 5, 2, "cpu", generator=np.random.default_rng(0))
    assert x.tolist() == [[3, 1]] * 5 and y.tolist() == [[1, 4]] * 5


@pytest.mark.parametrize(("length", "context"), [(4, 4), (2, 4), (10, 0)])
def test_too_short_dataset_is_a_data_error(length, context):
    with pytest.raises(DataError, match="too short"):
        get_batch(np.zeros(length, dtype=np.uint16), 2, context, "cpu")


def test_seeded_generator_reproduces_and_state_resumes():
    data = np.arange(10_000, dtype=np.uint16)
    a = [get_batch(data, 4, 16, "cpu", generator=np.random.default_rng(7))[0] for _ in range(2)]
    assert torch.equal(a[0], a[1])
    gen = np.random.default_rng(7)
    get_batch(data, 4, 16, "cpu", generator=gen)
    state = gen.bit_generator.state  # what a checkpoint stores
    expected = get_batch(data, 4, 16, "cpu", generator=gen)[0]
    resumed = np.random.default_rng()
    resumed.bit_generator.state = state
    assert torch.equal(get_batch(data, 4, 16, "cpu", generator=resumed)[0], expected)


def test_global_numpy_rng_when_no_generator():
    data = np.arange(10_000, dtype=np.uint16)
    np.random.seed(3)
    first = get_batch(data, 4, 16, "cpu")[0]
    np.random.seed(3)
    assert torch.equal(get_batch(data, 4, 16, "cpu")[0], first)


def test_memmap_is_not_read_whole(tmp_path):
    # a 4 GiB sparse token file: sampling from it must only touch the windows it returns
    path = tmp_path / "big.npy"
    n = 2**31
    header = np.lib.format
    with open(path, "wb") as f:
        header.write_array_header_1_0(f, {"descr": "<u2", "fortran_order": False, "shape": (n,)})
        offset = f.tell()
        f.seek(offset + 2 * n - 2)
        f.write(np.array([7], dtype=np.uint16).tobytes())
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokens = load_tokens(path)
    assert isinstance(tokens, np.memmap) and len(tokens) == n
    x, _ = get_batch(tokens, 4, 64, "cpu", generator=np.random.default_rng(0))
    assert x.shape == (4, 64) and int(x.max()) == 0
    batches = list(iter_eval_batches(tokens, 2, 64, 2, "cpu"))
    assert int(batches[-1][1][-1, -1]) == 7  # the last eval target is the file's last id
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib) / 1024
    assert grown_mib < 256  # a copy of the file would need 4096 MiB


def test_eval_window_starts_hand_example():
    assert eval_window_starts(101, 10, 4).tolist() == [0, 30, 60, 90]
    assert eval_window_starts(11, 10, 3).tolist() == [0, 0, 0]
    assert eval_window_starts(50, 10, 1).tolist() == [0]


def test_eval_batches_are_fixed_and_cover_the_split():
    data = np.arange(1000, dtype=np.uint16)
    run = lambda: [(x.clone(), y.clone()) for x, y in iter_eval_batches(data, 4, 16, 3, "cpu")]
    first, second = run(), run()
    assert len(first) == 3 and all(x.shape == (4, 16) for x, _ in first)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(x1[:, 1:], y1[:, :-1])
    starts = torch.cat([x[:, 0] for x, _ in first])
    assert starts[0] == 0 and first[-1][1][-1, -1] == 999
    assert (starts.diff() > 0).all()  # evenly spread, no repeats


def test_eval_batches_none_covers_every_target_once_at_least():
    data = np.arange(103, dtype=np.uint16)
    batches = list(iter_eval_batches(data, 4, 10, None, "cpu"))
    targets = torch.cat([y.flatten() for _, y in batches])
    assert len(batches) == 3 and batches[-1][0].shape == (3, 10)  # ceil(102/10) = 11 windows
    assert set(targets.tolist()) == set(range(1, 103))


@pytest.mark.gpu
def test_cuda_batch_is_on_device():
    x, y = get_batch(np.arange(100, dtype=np.uint16), 2, 8, "cuda", generator=np.random.default_rng(0))
    assert x.is_cuda and y.is_cuda and torch.equal(x[:, 1:].cpu(), y[:, :-1].cpu())
