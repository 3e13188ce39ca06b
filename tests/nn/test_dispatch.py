"""How ``cs336_lm.nn.dispatch`` chooses between the Triton kernels and ``nn.functional``, and the whole model
on each backend (under the interpreter on CPU, natively on CUDA)."""

import os
import subprocess
import sys

import pytest
import torch

from cs336_lm.errors import ConfigError
from cs336_lm.nn import dispatch

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(not INTERPRETING, reason="runs Triton on CPU tensors through the interpreter")


@pytest.fixture
def triton_calls(monkeypatch) -> list[str]:
    """Replace the four Triton entry points with recorders that return the reference result."""
    pytest.importorskip("triton")
    from cs336_lm.kernels import rmsnorm, softmax

    calls = []

    def recorder(name, result):
        def record(*args, **kwargs):
            calls.append(name)
            return result(*args)

        return record

    rms = recorder("rms_norm", lambda x, w, eps: torch.nn.functional.rms_norm(x, (x.shape[-1],), w, eps))
    monkeypatch.setattr(rmsnorm, "triton_rms_norm", rms)
    monkeypatch.setattr(rmsnorm, "triton_add_rms_norm", recorder("add_rms_norm", lambda x, r, w, eps: (x + r, x + r)))
    monkeypatch.setattr(softmax, "triton_softmax", recorder("softmax", lambda x: torch.softmax(x, -1)))
    monkeypatch.setattr(softmax, "triton_causal_softmax", recorder("causal_softmax", lambda s, c, o: s))
    return calls


def call_all(device: str, backend: str, dtype=torch.float32) -> None:
    x = torch.randn(2, 4, 4, device=device, dtype=dtype)
    w = torch.ones(4, device=device, dtype=dtype)
    dispatch.rms_norm(x, w, 1e-5, backend=backend)
    dispatch.add_rms_norm(x, x, w, 1e-5, backend=backend)
    dispatch.softmax(x, -1, backend=backend)
    dispatch.causal_softmax(x, 0.5, 0, backend=backend)


ALL = ["rms_norm", "add_rms_norm", "softmax", "causal_softmax"]


def test_auto_and_torch_use_the_reference_on_cpu(triton_calls):
    call_all("cpu", "auto")
    call_all("cpu", "torch")
    assert triton_calls == []


@needs_interpreter
def test_triton_forces_the_kernels_on_cpu_under_the_interpreter(triton_calls):
    call_all("cpu", "triton")
    assert triton_calls == ALL


@pytest.mark.gpu
def test_auto_uses_triton_on_cuda(triton_calls):
    call_all("cuda", "auto")
    call_all("cuda", "torch")
    assert triton_calls == ALL


@pytest.mark.gpu
def test_auto_falls_back_for_float64_on_cuda(triton_calls):
    call_all("cuda", "auto", torch.float64)
    assert triton_calls == []


def test_triton_without_a_usable_device_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ConfigError, match="kernels='triton' cannot run: the tensor is on cpu"):
        dispatch.rms_norm(torch.ones(2, 4), torch.ones(4), backend="triton")


def test_triton_with_an_unsupported_dtype_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"dtype torch.float64 is not supported"):
        dispatch.softmax(torch.ones(2, 4, dtype=torch.float64), backend="triton")


def test_unknown_backend_and_negative_offset_are_rejected():
    with pytest.raises(ValueError, match="kernels backend must be one of"):
        dispatch.softmax(torch.ones(2, 4), backend="cuda")
    with pytest.raises(ValueError, match="q_offset must be >= 0"):
        dispatch.causal_softmax(torch.ones(2, 4, 4), 1.0, -1, backend="torch")


@needs_interpreter
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_over_any_dim(dim):
    pytest.importorskip("triton")
    x = torch.randn(3, 5, 6, requires_grad=True)
    y = dispatch.softmax(x, dim, backend="triton")
    torch.testing.assert_close(y, torch.softmax(x, dim))
    (dx,) = torch.autograd.grad(y, x, torch.arange(90.0).view(3, 5, 6))
    (dx_ref,) = torch.autograd.grad(torch.softmax(x, dim), x, torch.arange(90.0).view(3, 5, 6))
    torch.testing.assert_close(dx, dx_ref)


@needs_interpreter
def test_add_rms_norm_promotes_mixed_dtypes():
    pytest.importorskip("triton")
    x, r, w = torch.randn(4, 24, dtype=torch.bfloat16), torch.randn(4, 24), torch.randn(24)
    normed, summed = dispatch.add_rms_norm(x, r, w, 1e-5, backend="triton")
    ref_normed, ref_summed = dispatch.add_rms_norm(x, r, w, 1e-5, backend="torch")
    assert normed.dtype == summed.dtype == torch.float32
    torch.testing.assert_close(summed, ref_summed)
    torch.testing.assert_close(normed, ref_normed)


def test_cpu_runs_never_import_triton():
    code = (
        "import sys, torch\n"
        "from cs336_lm.nn import dispatch\n"
        "from cs336_lm.nn import TransformerLM\n"
        "x = torch.randn(2, 3, 4)\n"
        "dispatch.rms_norm(x, torch.ones(4)); dispatch.add_rms_norm(x, x, torch.ones(4))\n"
        "dispatch.softmax(x, 1); dispatch.causal_softmax(x, 0.5)\n"
        "TransformerLM(32, 8, 16, 1, 2, 24)(torch.zeros(1, 8, dtype=torch.long))\n"
        "assert 'triton' not in sys.modules, 'triton was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_model_on_triton_kernels_matches_torch_kernels(target, attention):
    pytest.importorskip("triton")
    from cs336_lm.nn import TransformerLM

    shape = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=48)
    torch.manual_seed(0)
    reference = TransformerLM(**shape, kernels="torch", attention=attention).to(target.device)
    ours = TransformerLM(**shape, kernels="triton", attention=attention).to(target.device)
    ours.load_state_dict(reference.state_dict())
    tokens = torch.randint(0, 64, (2, 12), device=target.device)
    outputs = []
    for model in (reference, ours):
        logits = target.wrap(model)(tokens)
        logits.square().mean().backward()
        outputs.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(outputs[1][0], outputs[0][0], atol=1e-5, rtol=1e-5)
    assert outputs[1][1].keys() == outputs[0][1].keys()
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(outputs[1][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


@needs_interpreter
def test_backend_choice_traces_into_one_graph():
    # torch.compile(model) must not break the graph at every dispatch call.
    def choose(x):
        forced = dispatch.use_triton(x.device, x.dtype, "triton")
        auto = dispatch.use_triton(x.device, x.dtype, "auto")
        return x * (2 if forced else 1) * (3 if auto else 1)

    torch._dynamo.reset()
    assert torch.compile(choose, fullgraph=True, backend="eager")(torch.ones(2)).tolist() == [2.0, 2.0]
