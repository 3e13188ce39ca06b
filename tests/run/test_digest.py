"""The content digest: equal to SHA-256 of the byte stream the module documents, exact for every dtype, and
different whenever anything a checkpoint holds differs."""

import hashlib

import numpy as np
import pytest
import torch

from cs336_lm.run.digest import content_digest, tensor_bytes


def sha(stream: bytes) -> str:
    return "sha256:" + hashlib.sha256(stream).hexdigest()


def test_documented_example_and_a_tensor_match_a_hand_built_stream():
    assert content_digest({"iteration": 3}) == sha(b"dict 1\nstr 9\niterationint 3\n")
    weights = np.array([[1.5, -2.0, 3.25]], dtype=np.float32)
    stream = (
        b"dict 2\nstr 1\nw"
        + b"tensor torch.float32 (1, 3)\n"
        + weights.tobytes()
        + b"str 2\nlrfloat 0x1.0000000000000p-10\n"
    )
    assert content_digest({"w": torch.from_numpy(weights), "lr": 2**-10}) == sha(stream)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.uint8, torch.bool])
def test_tensor_bytes_are_the_elements_in_row_major_order(dtype):
    t = (torch.arange(12).reshape(3, 4) % 5).to(dtype)

    def numpy_bytes(x: torch.Tensor) -> bytes:  # NumPy's own bytes; bf16 (unknown to NumPy) read as int16
        return (x.view(torch.int16) if x.dtype == torch.bfloat16 else x).contiguous().numpy().tobytes()

    assert bytes(tensor_bytes(t)) == numpy_bytes(t)
    assert bytes(tensor_bytes(t.T)) == numpy_bytes(t.T)  # a strided view: its elements, not its storage
    assert bytes(tensor_bytes(torch.tensor(3, dtype=dtype))) == numpy_bytes(torch.tensor([3], dtype=dtype))


def test_bf16_element_bytes():
    assert bytes(tensor_bytes(torch.tensor([1.0], dtype=torch.bfloat16))) == b"\x80\x3f"


def test_any_difference_changes_the_digest():
    base = {"model": {"w": torch.ones(2, 3)}, "iteration": 5, "config": {"lr": 1e-3, "name": "a"}, "rng": [1, 2]}
    variants = [
        {**base, "iteration": 6},
        {**base, "iteration": 5.0},
        {**base, "iteration": True},
        {**base, "iteration": "5"},
        {**base, "model": {"w": torch.ones(3, 2)}},  # same bytes, other shape
        {**base, "model": {"w": torch.ones(2, 3, dtype=torch.float64)}},
        {**base, "model": {"w": torch.ones(2, 3).bfloat16()}},
        {**base, "model": {"v": torch.ones(2, 3)}},
        {**base, "config": {"lr": 1e-3 + 1e-18, "name": "a"}},  # the next float
        {**base, "config": {"lr": 1e-3, "name": "ab"}},
        {**base, "rng": [1, 2, 3]},
        {**base, "rng": [[1], 2]},
        {**base, "rng": None},
    ]
    one_bit = {**base, "model": {"w": torch.ones(2, 3)}}
    one_bit["model"]["w"].view(torch.int32)[1, 2] ^= 1
    digests = {content_digest(v) for v in [base, *variants, one_bit]}
    assert len(digests) == len(variants) + 2
    same = {"model": {"w": torch.ones(3, 2).T}, "iteration": 5, "config": {"lr": 1e-3, "name": "a"}, "rng": (1, 2)}
    assert content_digest(same) == content_digest(base)  # a transposed copy and a tuple hold the same values


def test_strings_with_lone_surrogates_and_devices_digest():
    assert content_digest({"path": "r\udcffun", "device": torch.device("cpu"), "dtype": torch.bfloat16}).startswith(
        "sha256:"
    )
    with pytest.raises(TypeError, match="cannot digest a ndarray"):
        content_digest({"x": np.zeros(2)})
